/** `waypost control --admin` default: istiod's monitoring/debug port (its /debug/syncz lives there too). */
export const DEFAULT_CONTROL_ADMIN = '127.0.0.1:15014';
