/**
 * A stand-in for systemd's notify socket: a real AF_UNIX datagram socket (python3, since Node
 * has none) that records every message. On READY=1 it connects to the agent's control socket
 * right away and records whether that worked — READY must mean "serving".
 */
import { ChildProcess, spawn } from 'child_process';

const SCRIPT = `
import json, socket, sys, time
path, control = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path)
print(json.dumps({"bound": True}), flush=True)
while True:
    data = s.recv(4096).decode()
    rec = {"t": time.monotonic(), "msg": data}
    if "READY=1" in data.split("\\n"):
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            c.connect(control)
            rec["controlServing"] = True
        except OSError as e:
            rec["controlServing"] = False
            rec["controlError"] = str(e)
        c.close()
    print(json.dumps(rec), flush=True)
`;

export interface NotifyRecord {
  t: number;
  msg: string;
  controlServing?: boolean;
  controlError?: string;
}

export interface NotifySocket {
  path: string;
  records: NotifyRecord[];
  proc: ChildProcess;
  close(): Promise<void>;
}

export async function startNotifySocket(path: string, controlSocket: string): Promise<NotifySocket> {
  const proc = spawn('python3', ['-c', SCRIPT, path, controlSocket], { stdio: ['ignore', 'pipe', 'inherit'] });
  const records: NotifyRecord[] = [];
  let buf = '';
  await new Promise<void>((resolve, reject) => {
    proc.once('error', reject);
    proc.once('exit', (code) => reject(new Error(`notify socket helper exited with ${code}`)));
    proc.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        const rec = JSON.parse(line) as NotifyRecord & { bound?: boolean };
        if (rec.bound) resolve();
        else records.push(rec);
      }
    });
  });
  return {
    path, records, proc,
    close: async () => {
      if (proc.exitCode !== null) return;
      const gone = new Promise((r) => proc.once('exit', r));
      proc.kill('SIGTERM');
      await gone;
    },
  };
}
