/**
 * Checks across documents: two documents claiming one host, name or protocol; two listeners on one address:port;
 * ports whose protocol has no codec (or one outside `knownCodecs`); route destinations and mirrors that name a
 * host, port or subset no ServiceEntry/DestinationRule defines. Errors go on the later (or referring) document.
 */

import { ConfigError } from './errors.js';
import { Checker, isMapping } from './checker.js';
import {
  addressesOverlap,
  bindAddresses,
  ConfigModel,
  destinationPort,
  isPortNumber,
  where,
  type Service,
} from './model.js';
import { KIND_META_ROUTER, type CrdDocument } from './types.js';
import { BUILTIN_CODECS } from './protocol.js';

export interface RefOptions {
  bind: string;
  knownCodecs?: string[];
}

export function checkReferences(
  model: ConfigModel,
  options: RefOptions,
  errors: ConfigError[],
  warnings: ConfigError[],
): void {
  const checker = (doc: CrdDocument) => new Checker(doc, errors, warnings);

  for (const conflict of model.conflicts) errors.push(ConfigError.at(conflict.doc, conflict.path, conflict.message));

  // Codecs, and listener address:port clashes, in document order.
  const bound: Array<{ address: string; port: number; svc: Service; portName: string }> = [];
  for (const svc of model.services.values()) {
    const c = checker(svc.doc);
    const addresses = bindAddresses(svc.spec, options.bind);
    for (const port of svc.metaPorts) {
      const namePath = `spec.ports[${port.index}].name`;
      const codec = model.codecs.get(port.protocol);
      if (!codec) {
        c.error(
          namePath,
          `no codec for protocol "${port.protocol}": add an ApplicationProtocol mapping it to a codec (built in: ${Object.keys(BUILTIN_CODECS).join(', ')})`,
        );
      } else if (options.knownCodecs && !options.knownCodecs.includes(codec.codec)) {
        const from = codec.doc ? `, from ApplicationProtocol/${codec.doc.name} (${where(codec.doc)})` : '';
        const known = options.knownCodecs.length > 0 ? options.knownCodecs.join(', ') : 'none';
        c.error(namePath, `codec "${codec.codec}" (protocol "${port.protocol}"${from}) is not a known codec (known: ${known})`);
      }
      for (const address of addresses) {
        const clash = bound.find((b) => b.port === port.number && addressesOverlap(b.address, address));
        if (clash) {
          const by = clash.svc === svc ? `this ServiceEntry's port ${clash.portName}` : `ServiceEntry/${clash.svc.doc.name} (${where(clash.svc.doc)}) port ${clash.portName}`;
          c.error(`spec.ports[${port.index}].number`, `${address}:${port.number} is already bound by ${by}`);
        } else {
          bound.push({ address, port: port.number, svc, portName: port.name });
        }
      }
    }
  }

  for (const dr of model.destinationRules.values()) {
    if (!model.service(dr.spec.host)) {
      checker(dr.doc).warn('spec.host', `no ServiceEntry defines host "${dr.spec.host}": the DestinationRule is not used`);
    }
  }

  for (const doc of model.docs) {
    if (doc.kind !== KIND_META_ROUTER || !isMapping(doc.spec)) continue;
    checkRouterReferences(model, checker(doc), doc.spec);
  }
}

function checkRouterReferences(model: ConfigModel, c: Checker, spec: Record<string, unknown>): void {
  const host = Array.isArray(spec.hosts) && spec.hosts.length === 1 && typeof spec.hosts[0] === 'string' ? spec.hosts[0] : undefined;
  const own = host !== undefined ? model.service(host) : undefined;
  if (host !== undefined && host !== '') {
    if (!own) c.warn('spec.hosts[0]', `no ServiceEntry defines host "${host}": the MetaRouter is not used`);
    else if (own.metaPorts.length === 0) c.warn('spec.hosts[0]', `ServiceEntry/${own.doc.name} has no MetaProtocol port: the MetaRouter is not used`);
  }
  // A destination without a port resolves per listener port of the router's own service.
  const listenerPorts: Array<number | undefined> = own && own.metaPorts.length > 0 ? own.metaPorts.map((p) => p.number) : [undefined];
  const reported = new Set<string>();
  const error = (path: string, message: string) => {
    const key = `${path}\n${message}`;
    if (reported.has(key)) return;
    reported.add(key);
    c.error(path, message);
  };

  const routes = Array.isArray(spec.routes) ? spec.routes : [];
  routes.forEach((route, i) => {
    if (!isMapping(route)) return;
    const destinations = Array.isArray(route.route) ? route.route : [];
    destinations.forEach((d, j) => {
      if (isMapping(d)) checkDestinationRef(model, d.destination, `spec.routes[${i}].route[${j}].destination`, listenerPorts, error);
    });
    checkDestinationRef(model, route.mirror, `spec.routes[${i}].mirror`, listenerPorts, error);
  });

  // A global rate limit service named as a cluster must be a ServiceEntry port.
  const limit = isMapping(spec.globalRateLimit) ? spec.globalRateLimit : undefined;
  const service = typeof limit?.rateLimitService === 'string' ? limit.rateLimitService : undefined;
  const m = service ? /^outbound\|(\d+)\|\|(.+)$/.exec(service) : null;
  if (m) {
    const svc = model.service(m[2]!);
    if (!svc) error('spec.globalRateLimit.rateLimitService', `no ServiceEntry defines host "${m[2]}"`);
    else if (!svc.spec.ports?.some((p) => p.number === Number(m[1]))) {
      error('spec.globalRateLimit.rateLimitService', `ServiceEntry/${svc.doc.name} has no port ${m[1]}`);
    }
  }
}

function checkDestinationRef(
  model: ConfigModel,
  raw: unknown,
  path: string,
  listenerPorts: Array<number | undefined>,
  error: (path: string, message: string) => void,
): void {
  if (!isMapping(raw) || typeof raw.host !== 'string' || raw.host === '') return;
  const host = raw.host;
  const svc = model.service(host);
  if (!svc) {
    error(`${path}.host`, `host "${host}" is not defined by any ServiceEntry`);
    return;
  }
  if (svc.metaPorts.length === 0) {
    error(`${path}.host`, `host "${host}" has no MetaProtocol port (a port named tcp-metaprotocol-<protocol>)`);
    return;
  }
  const portNumbers = svc.metaPorts.map((p) => p.number).join(', ');
  const explicitRaw = isMapping(raw.port) ? raw.port.number : undefined;
  if (explicitRaw !== undefined) {
    if (isPortNumber(explicitRaw) && destinationPort(svc, explicitRaw, undefined) === undefined) {
      error(`${path}.port.number`, `host "${host}" has no MetaProtocol port ${explicitRaw} (its MetaProtocol ports: ${portNumbers})`);
    }
  } else {
    for (const listenerPort of listenerPorts) {
      if (destinationPort(svc, undefined, listenerPort) === undefined) {
        error(`${path}.port`, `required: host "${host}" has several MetaProtocol ports (${portNumbers})${listenerPort !== undefined ? ` and none is the listener's port ${listenerPort}` : ''}`);
      }
    }
  }
  const subset = raw.subset;
  if (typeof subset === 'string' && subset !== '' && !model.subsetNames(host).includes(subset)) {
    error(`${path}.subset`, `subset "${subset}" is not defined by any DestinationRule for host "${host}"`);
  }
}
