import { Inject, Injectable, SetMetadata, UnauthorizedException, type CanActivate, type ExecutionContext } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import { AdminToken } from './admin-token.service';

const PUBLIC_ROUTE = 'covnet:public-route';

/** Marks a route that needs no admin token, such as the health check. */
export const PublicRoute = () => SetMetadata(PUBLIC_ROUTE, true);

/** Requires `Authorization: Bearer <admin token>` on every REST route not marked `@PublicRoute()`. */
@Injectable()
export class AdminGuard implements CanActivate {
  constructor(
    @Inject(Reflector) private readonly reflector: Reflector,
    @Inject(AdminToken) private readonly token: AdminToken,
  ) {}

  canActivate(context: ExecutionContext): boolean {
    if (context.getType() !== 'http') return true;
    const isPublic = this.reflector.getAllAndOverride<boolean>(PUBLIC_ROUTE, [context.getHandler(), context.getClass()]);
    if (isPublic) return true;
    const request = context.switchToHttp().getRequest<{ headers: { authorization?: string } }>();
    if (this.token.matchesHeader(request.headers.authorization)) return true;
    throw new UnauthorizedException('missing or invalid admin token: send the header "Authorization: Bearer <admin token>"');
  }
}
