import { Controller, Get, Inject } from '@nestjs/common';
import { ModelStore } from '../models/model-store.service';

@Controller('models')
export class ModelsController {
  constructor(@Inject(ModelStore) private readonly models: ModelStore) {}

  @Get()
  async list() {
    const versions = await this.models.list();
    return versions.map((v) => ({
      version: v.version,
      round: v.round,
      sha256: v.sha256,
      byteLength: v.byteLength,
      createdAt: v.createdAt,
    }));
  }
}
