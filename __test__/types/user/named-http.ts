// HTTP over the relay, Entra ID credentials and the hyco-https subpath, with named imports
// (type-checked in every module mode by __test__/types-package.test.mjs; nothing here runs).
import { IncomingMessage, ServerResponse } from 'http';

import {
  createRelayHttpsUri,
  createRelayToken,
  createRelayedServer,
  relayedConnect,
  relayedFetch,
  RelayedServer
} from 'hyco-ws-rs';
import type { RelayAccessToken, RelayedFetchInit, RelayRefusedError, RelayTokenCredential, TokenProvider } from 'hyco-ws-rs';
import {
  createRelayedServer as createHttpsServer,
  createRelayHttpsUri as httpsUri,
  createServer as createNodeHttpsServer,
  request,
  Server,
  ServerResponse as HttpsServerResponse
} from 'hyco-ws-rs/https';
import type { AgentOptions, RequestOptions, ServerOptions } from 'hyco-ws-rs/https';

/** Node's own https names, from the same entry point, under import as under require. */
export function nodeHttps(options: ServerOptions, agent: AgentOptions, target: RequestOptions): void {
  createNodeHttpsServer(options).close();
  void agent.keepAlive;
  void target.hostname;
}

/** What @types/express declares an app to be: a function of Node's req and res (and more). */
interface ExpressLikeApp {
  (req: IncomingMessage, res: ServerResponse, next?: (err?: unknown) => void): void;
  use(...handlers: unknown[]): this;
}

/** An Express app, and handlers typed with Node's classes, are 'request' listeners as they are. */
export function serve(app: ExpressLikeApp, connectionString: string): RelayedServer {
  const server = createRelayedServer({ connectionString, requestTimeout: 30000 });
  server.on('request', app);
  server.on('request', (req: IncomingMessage, res: ServerResponse) => res.end(req.url));
  server.on('request', (req, res) => {
    const id: string | undefined = req.id;
    res.writeHead(200, { 'Content-Type': 'text/plain' });
    res.end(id ?? '');
  });
  server.on('warning', (err) => void err.cause);
  return server;
}

/** Entra ID credentials, and token functions that state their expiry. */
export function credentials(uri: string, credential: RelayTokenCredential): void {
  new RelayedServer({ server: uri, credential, scope: 'https://relay.azure.net//.default' });
  createRelayedServer({ connectionString: 'Endpoint=sb://ns.servicebus.windows.net/;EntityPath=hc', credential });
  const provider: TokenProvider = async (): Promise<RelayAccessToken> => ({ token: 'jwt', expiresOnTimestamp: Date.now() + 3600000 });
  new RelayedServer({ server: uri, token: provider });
  relayedConnect(uri, null, { credential });
  relayedConnect(uri, () => 'SharedAccessSignature sr=x&sig=y&se=1&skn=z');
}

/** HTTP senders. */
export async function send(namespace: string, key: string): Promise<number> {
  const url = createRelayHttpsUri(namespace, 'hc/items', null, 'trace');
  const init: RelayedFetchInit = { token: createRelayToken(url, 'rule', key), method: 'POST', body: '{}', id: 'trace' };
  try {
    const res: Response = await relayedFetch(url, init);
    return res.status;
  } catch (err) {
    const refused = err as RelayRefusedError;
    return refused.statusCode;
  }
}

/** hyco-https code, with only its require changed. */
export function hycoHttps(uri: string, token: string): Server {
  const server = createHttpsServer({ server: uri, token }, (req: IncomingMessage, res: ServerResponse) => res.end('hi'));
  server.listen(() => undefined);
  const alsoServer: Server = new Server({ server: uri, token });
  const isNodes: boolean = HttpsServerResponse === ServerResponse;
  const sender = request(httpsUri('ns', 'hc'), { method: 'GET' });
  sender.end();
  void [alsoServer, isNodes];
  return server;
}
