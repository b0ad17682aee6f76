/**
 * The loaded documents indexed the way translation looks them up: services by host, DestinationRules and
 * MetaRouters by host, codecs by protocol. Built defensively, so validation can use it on documents with errors:
 * parts of a spec with the wrong type are skipped. When two documents claim the same thing, the first keeps it and
 * the clash is recorded in `conflicts` (validation reports them as errors on the later document).
 */

import { isIP } from 'node:net';
import { isMapping } from './checker.js';
import { BUILTIN_CODECS, classifyPort } from './protocol.js';
import {
  KIND_APPLICATION_PROTOCOL,
  KIND_DESTINATION_RULE,
  KIND_META_ROUTER,
  KIND_SERVICE_ENTRY,
  TRANSLATED_KINDS,
  type CrdDocument,
  type DestinationRuleSpec,
  type MetaRouterSpec,
  type ServiceEntrySpec,
} from './types.js';

/** A MetaProtocol port of a service. */
export interface MetaPort {
  /** Position in `spec.ports`. */
  index: number;
  number: number;
  name: string;
  protocol: string;
  targetPort?: number;
}

export interface Service {
  doc: CrdDocument;
  /** `hosts[0]`: the name Aeraki serves a ServiceEntry under. */
  host: string;
  spec: ServiceEntrySpec;
  metaPorts: MetaPort[];
}

export interface Indexed<S> {
  doc: CrdDocument;
  spec: S;
}

export interface Codec {
  codec: string;
  /** The ApplicationProtocol that set it; none for a built-in. */
  doc?: CrdDocument;
}

export interface Conflict {
  /** The later document, which loses. */
  doc: CrdDocument;
  path: string;
  message: string;
}

export class ConfigModel {
  readonly services = new Map<string, Service>();
  readonly destinationRules = new Map<string, Indexed<DestinationRuleSpec>>();
  readonly metaRouters = new Map<string, Indexed<MetaRouterSpec>>();
  readonly codecs = new Map<string, Codec>();
  readonly conflicts: Conflict[] = [];

  constructor(readonly docs: readonly CrdDocument[]) {
    for (const [protocol, codec] of Object.entries(BUILTIN_CODECS)) this.codecs.set(protocol, { codec });
    const names = new Map<string, CrdDocument>();
    for (const doc of docs) {
      if (!isTranslated(doc) || !isMapping(doc.spec)) continue;
      const key = `${doc.kind}/${doc.namespace ?? ''}/${doc.name}`;
      const same = names.get(key);
      if (same && doc.name) {
        this.conflict(doc, 'metadata.name', `${doc.kind} "${doc.name}"${doc.namespace ? ` in namespace "${doc.namespace}"` : ''} is already defined at ${where(same)}`);
      } else {
        names.set(key, doc);
      }
      const spec = doc.spec;
      switch (doc.kind) {
        case KIND_SERVICE_ENTRY:
          this.addService(doc, spec);
          break;
        case KIND_DESTINATION_RULE:
          this.addByHost(this.destinationRules, doc, spec.host, 'spec.host', 'DestinationRule', 'at most one DestinationRule per host');
          break;
        case KIND_META_ROUTER:
          if (Array.isArray(spec.hosts) && spec.hosts.length === 1) {
            this.addByHost(this.metaRouters, doc, spec.hosts[0], 'spec.hosts[0]', 'MetaRouter', 'at most one MetaRouter per host');
          }
          break;
        case KIND_APPLICATION_PROTOCOL:
          this.addCodec(doc, spec);
          break;
      }
    }
  }

  /** The service whose host is `host`. */
  service(host: string): Service | undefined {
    return this.services.get(host);
  }

  /** The subsets a DestinationRule defines for `host`, by name. */
  subsetNames(host: string): string[] {
    const dr = this.destinationRules.get(host);
    if (!dr || !Array.isArray(dr.spec.subsets)) return [];
    return dr.spec.subsets.filter(isMapping).map((s) => s.name).filter((n): n is string => typeof n === 'string');
  }

  private addService(doc: CrdDocument, spec: Record<string, unknown>): void {
    const hosts = Array.isArray(spec.hosts) ? spec.hosts : [];
    const host = hosts[0];
    if (typeof host !== 'string' || host === '') return;
    const metaPorts: MetaPort[] = [];
    const ports = Array.isArray(spec.ports) ? spec.ports : [];
    const numbers = new Set<number>();
    ports.forEach((p, index) => {
      if (!isMapping(p) || typeof p.name !== 'string' || !isPortNumber(p.number)) return;
      const kind = classifyPort(p.name);
      if (kind.kind !== 'metaprotocol' || numbers.has(p.number)) return;
      numbers.add(p.number);
      const port: MetaPort = { index, number: p.number, name: p.name, protocol: kind.protocol };
      if (isPortNumber(p.targetPort)) port.targetPort = p.targetPort;
      metaPorts.push(port);
    });
    const existing = this.services.get(host);
    if (existing) {
      this.conflict(doc, 'spec.hosts[0]', `host "${host}" is already defined by ServiceEntry/${existing.doc.name} (${where(existing.doc)})`);
      return;
    }
    this.services.set(host, { doc, host, spec: spec as unknown as ServiceEntrySpec, metaPorts });
  }

  private addByHost<S>(
    map: Map<string, Indexed<S>>,
    doc: CrdDocument,
    host: unknown,
    path: string,
    kind: string,
    rule: string,
  ): void {
    if (typeof host !== 'string' || host === '') return;
    const existing = map.get(host);
    if (existing) {
      this.conflict(doc, path, `host "${host}" already has ${kind}/${existing.doc.name} (${where(existing.doc)}): ${rule}`);
      return;
    }
    map.set(host, { doc, spec: doc.spec as S });
  }

  private addCodec(doc: CrdDocument, spec: Record<string, unknown>): void {
    const { protocol, codec } = spec;
    if (typeof protocol !== 'string' || protocol === '' || typeof codec !== 'string' || codec === '') return;
    const existing = this.codecs.get(protocol);
    if (existing?.doc) {
      if (existing.codec !== codec) {
        this.conflict(
          doc,
          'spec.protocol',
          `protocol "${protocol}" already maps to codec "${existing.codec}" (ApplicationProtocol/${existing.doc.name}, ${where(existing.doc)})`,
        );
      }
      return;
    }
    this.codecs.set(protocol, { codec, doc }); // an ApplicationProtocol overrides a built-in
  }

  private conflict(doc: CrdDocument, path: string, message: string): void {
    this.conflicts.push({ doc, path, message });
  }
}

export function isTranslated(doc: CrdDocument): boolean {
  return Object.hasOwn(TRANSLATED_KINDS, doc.kind) && TRANSLATED_KINDS[doc.kind]!.includes(doc.apiVersion);
}

export function isPortNumber(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= 65535;
}

/** `file:index`, to point at another document in a message. */
export function where(doc: CrdDocument): string {
  return `${doc.file}:${doc.index}`;
}

/**
 * The MetaProtocol port a route destination goes to. An explicit `port.number` must be one of the service's
 * MetaProtocol ports. Without one: the service's only MetaProtocol port, or else the port of the listener the route
 * serves (`listenerPort`) when the service has it, as Aeraki does. Undefined when none fits.
 */
export function destinationPort(svc: Service, explicit: number | undefined, listenerPort: number | undefined): number | undefined {
  if (explicit !== undefined) return svc.metaPorts.some((p) => p.number === explicit) ? explicit : undefined;
  if (svc.metaPorts.length === 1) return svc.metaPorts[0]!.number;
  if (listenerPort !== undefined && svc.metaPorts.some((p) => p.number === listenerPort)) return listenerPort;
  return undefined;
}

/** The addresses a service's listeners bind: its `addresses` (single IPs; `/32` and `/128` CIDRs as the IP), or `bind`. */
export function bindAddresses(spec: ServiceEntrySpec, bind: string): string[] {
  const out: string[] = [];
  for (const a of Array.isArray(spec.addresses) ? spec.addresses : []) {
    if (typeof a !== 'string') continue;
    const m = /^(.*)\/(32|128)$/.exec(a);
    const ip = m ? m[1]! : a;
    if (isIP(ip) && !out.includes(ip)) out.push(ip);
  }
  return out.length > 0 ? out : [bind];
}

/** Whether listeners on `a` and `b` (same port) would collide: the same address, or a wildcard covering the other. */
export function addressesOverlap(a: string, b: string): boolean {
  if (a === b || a === '::' || b === '::') return true;
  if (a === '0.0.0.0') return isIP(b) === 4;
  if (b === '0.0.0.0') return isIP(a) === 4;
  return false;
}

export const DEFAULT_BIND = '127.0.0.1';
