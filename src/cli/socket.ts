import { existsSync } from 'fs';
import { DEFAULT_CONFIG_PATH, defaultConfig, loadConfig } from '../config/config';

export interface SocketOpts { config?: string; socket?: string; json?: boolean }

/** --socket, then $LOCKAGENT_SOCKET, then socket_path from the config file, then the default. */
export function resolveSocket(o: SocketOpts): string {
  if (o.socket) return o.socket;
  if (process.env.LOCKAGENT_SOCKET) return process.env.LOCKAGENT_SOCKET;
  const path = o.config ?? process.env.LOCKAGENT_CONFIG ?? DEFAULT_CONFIG_PATH;
  if (o.config || existsSync(path)) return loadConfig(path).config.socketPath;
  return defaultConfig().socketPath;
}
