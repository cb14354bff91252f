// Types of the local relay emulator, checked by `tsc --strict --noEmit`.
import { startLocalRelay, createRelayListenUri, LocalRelay } from 'hyco-ws-rs';
import hyco = require('hyco-ws-rs');

async function useRelay(): Promise<void> {
  const relay: LocalRelay = await startLocalRelay({
    port: 0,
    hybridConnections: [{ name: 'hc' }, 'other', { name: 'open', requiresClientAuthorization: false }],
    rules: [{ name: 'listen', key: 'k', rights: ['Listen'] }],
    acceptTimeoutMs: 5000,
    maxListeners: 2,
    requestTimeoutMs: 1000,
    noListenerStatus: 502
  });
  const ns: string = relay.namespace;
  const uri: string = createRelayListenUri(ns, 'hc');
  const cs: string = relay.connectionString('hc');
  relay.on('event', (e: hyco.LocalRelayEvent) => {
    const type: string = e.type;
    const status: number | undefined = e.status;
    void type;
    void status;
  });
  const dropped: number = await relay.dropListeners({ code: 1001 });
  const frozen: number = relay.freezeListeners({ frozen: false });
  const stats: hyco.LocalRelayStats = relay.stats();
  await relay.restart();
  await relay.close();
  void [uri, cs, dropped, frozen, stats.bufferedBytes, stats.pendingRequests, stats.httpRequests];

  // @ts-expect-error: rights are Listen, Send or Manage
  await startLocalRelay({ rules: [{ name: 'r', key: 'k', rights: ['Read'] }] });
  // @ts-expect-error: the relay is made by startLocalRelay
  new LocalRelay();
  // @ts-expect-error: 'any' is the only string form
  await startLocalRelay({ hybridConnections: 'all' });
  // @ts-expect-error: the no-listener status is 404, 502 or 503
  await startLocalRelay({ noListenerStatus: 500 });

  // Entra ID mode
  const entra = await startLocalRelay({ entra: { secret: 'shh', localAuth: false } });
  const jwt: string = entra.createEntraToken({ roles: ['Azure Relay Listener'], ttl: 60 });
  const credential = entra.entraCredential({ roles: ['Azure Relay Sender'] });
  const asked: Array<string | string[]> = credential.scopes;
  const server = hyco.createRelayedServer({ connectionString: `Endpoint=sb://x/;EntityPath=hc`, credential });
  const sender = hyco.relayedConnect(hyco.createRelaySendUri(entra.namespace, 'hc'), null, { credential });
  const res: Promise<Response> = hyco.relayedFetch('https://x/hc', { credential, scope: 'https://relay.azure.net//.default' });
  const viaProxy: Promise<Response> = hyco.relayedFetch('https://x/hc', { token: 't', proxy: 'http://u:p@proxy.example:3128' });
  const viaUrl: Promise<Response> = hyco.relayedFetch(new URL('https://x/hc'), { proxy: new URL('https://proxy.example') });
  const direct: Promise<Response> = hyco.relayedFetch('https://x/hc', { proxy: false, method: 'POST', body: 'x' });
  const init: hyco.RelayedFetchInit = { proxy: false };
  void [jwt, asked, server, sender, res, viaProxy, viaUrl, direct, init];
  // @ts-expect-error: proxy is a URL or false
  hyco.relayedFetch('https://x/hc', { proxy: true });
  // @ts-expect-error: the roles are Relay's three RBAC roles
  entra.createEntraToken({ roles: ['Reader'] });
  // @ts-expect-error: the secret is a string or a Buffer
  await startLocalRelay({ entra: { secret: 42 } });
}

export { useRelay };
