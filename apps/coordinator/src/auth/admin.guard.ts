import {
  HttpException,
  HttpStatus,
  Inject,
  Injectable,
  SetMetadata,
  UnauthorizedException,
  type CanActivate,
  type ExecutionContext,
} from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { AdminToken } from './admin-token.service';
import { FailedAuthLimiter, type AuthClient } from './failed-auth-limiter';

const PUBLIC_ROUTE = 'covnet:public-route';

/** Marks a route that needs no admin token, such as the health check. */
export const PublicRoute = () => SetMetadata(PUBLIC_ROUTE, true);

/**
 * Requires `Authorization: Bearer <admin token>` on every REST route not marked `@PublicRoute()`.
 * An address with too many wrong tokens gets 429 with Retry-After, even for a right one.
 */
@Injectable()
export class AdminGuard implements CanActivate {
  constructor(
    @Inject(Reflector) private readonly reflector: Reflector,
    @Inject(AdminToken) private readonly token: AdminToken,
    @Inject(FailedAuthLimiter) private readonly limiter: FailedAuthLimiter,
  ) {}

  canActivate(context: ExecutionContext): boolean {
    if (context.getType() !== 'http') return true;
    const isPublic = this.reflector.getAllAndOverride<boolean>(PUBLIC_ROUTE, [context.getHandler(), context.getClass()]);
    if (isPublic) return true;
    const request = context.switchToHttp().getRequest<IncomingMessage>();
    // The TCP peer, not X-Forwarded-For: a header would let any client choose the address it is counted under.
    const client: AuthClient = { address: request.socket.remoteAddress ?? 'unknown', claim: 'admin' };
    const retryAfterS = this.limiter.retryAfterS(client);
    if (retryAfterS > 0) {
      context.switchToHttp().getResponse<ServerResponse>().setHeader('Retry-After', String(retryAfterS));
      throw new HttpException(`too many failed authentications from this address: retry in ${retryAfterS} s`, HttpStatus.TOO_MANY_REQUESTS);
    }
    const header = request.headers.authorization;
    if (this.token.matchesHeader(header)) return true;
    // A request without the header is not counted: it guesses no token, e.g. a page opened before the token is typed.
    if (header !== undefined) this.limiter.recordFailure(client, header);
    throw new UnauthorizedException('missing or invalid admin token: send the header "Authorization: Bearer <admin token>"');
  }
}
