import type { INestApplication } from '@nestjs/common';
import { DocumentBuilder, SwaggerModule } from '@nestjs/swagger';
import { COORDINATOR_VERSION } from '../version';

/** Path of the OpenAPI page; the JSON document is at `${API_DOCS_PATH}-json`. */
export const API_DOCS_PATH = 'api/docs';

/**
 * Serves the OpenAPI 3 description of the REST API and its Swagger UI page.
 * Both are public: they describe the routes and carry no data.
 */
export function serveApiDocs(app: INestApplication): void {
  const config = new DocumentBuilder()
    .setTitle('COVNet coordinator')
    .setDescription(
      'REST API of the federated COVNet coordinator. Every route except /api/health needs the admin token as "Authorization: Bearer <token>".',
    )
    .setVersion(COORDINATOR_VERSION)
    .addBearerAuth()
    .build();
  const document = SwaggerModule.createDocument(app, config);
  SwaggerModule.setup(API_DOCS_PATH, app, document);
}
