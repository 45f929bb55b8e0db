import { Controller, Get } from '@nestjs/common';
import { ApiOperation, ApiTags } from '@nestjs/swagger';
import { PublicRoute } from '../auth/admin.guard';

@ApiTags('health')
@Controller('health')
export class HealthController {
  @Get()
  @PublicRoute()
  @ApiOperation({ summary: 'Liveness check for container health checks; needs no token' })
  health() {
    return { status: 'ok' };
  }
}
