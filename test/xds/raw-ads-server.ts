/**
 * A scriptable ADS server for the xDS client suites, written with @grpc/proto-loader (not Waypost's server): it
 * records the requests a data plane sends and sends the responses a test tells it to.
 */
import * as grpc from '@grpc/grpc-js';
import { adsService, type AnyJson, type RawRequest, type RawResponse } from './helpers.js';

/** A scriptable ADS server: it records requests and sends what the test tells it to. */
export class RawAdsServer {
  private server: grpc.Server | undefined;
  port = 0;
  readonly requests: RawRequest[] = [];
  private waiters: Array<{ pred: (r: RawRequest) => boolean; resolve: (r: RawRequest) => void }> = [];
  calls: Array<grpc.ServerDuplexStream<RawRequest, RawResponse>> = [];
  private nonce = 0;

  async start(port = 0): Promise<void> {
    const server = new grpc.Server();
    server.addService(adsService().service, {
      StreamAggregatedResources: (call: grpc.ServerDuplexStream<RawRequest, RawResponse>) => {
        this.calls.push(call);
        call.on('data', (r: RawRequest) => {
          const i = this.waiters.findIndex((w) => w.pred(r));
          if (i >= 0) this.waiters.splice(i, 1)[0]!.resolve(r);
          else this.requests.push(r);
        });
        call.on('error', () => undefined);
        call.on('cancelled', () => (this.calls = this.calls.filter((c) => c !== call)));
      },
      DeltaAggregatedResources: (call: grpc.ServerDuplexStream<unknown, unknown>) => call.end(),
    });
    this.port = await new Promise<number>((resolve, reject) =>
      server.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
    );
    this.server = server;
  }

  /** The next request (already received or coming) that `pred` accepts; earlier unmatched ones are kept. */
  next(pred: (r: RawRequest) => boolean = () => true, timeoutMs = 5000): Promise<RawRequest> {
    const i = this.requests.findIndex(pred);
    if (i >= 0) return Promise.resolve(this.requests.splice(i, 1)[0]!);
    return new Promise((resolve, reject) => {
      const w = { pred, resolve };
      this.waiters.push(w);
      setTimeout(() => {
        const j = this.waiters.indexOf(w);
        if (j >= 0) {
          this.waiters.splice(j, 1);
          reject(new Error(`no matching request within ${timeoutMs} ms; unmatched: ${JSON.stringify(this.requests)}`));
        }
      }, timeoutMs);
    });
  }

  /** Sends a response on the newest stream; returns its nonce. */
  send(typeUrl: string, version: string, resources: AnyJson[]): string {
    const nonce = `n${++this.nonce}`;
    const call = this.calls[this.calls.length - 1];
    if (!call) throw new Error('no stream');
    call.write({ version_info: version, type_url: typeUrl, nonce, resources });
    return nonce;
  }

  stop(): void {
    for (const c of this.calls) c.end();
    this.calls = [];
    this.server?.forceShutdown();
    this.server = undefined;
  }
}
