/** The README's main command stays true: the demo shows an allowed, a refused and a released start. */
import { lockagent } from '../helpers/cli';

it('lockagent demo shows a gated start on test:///default', async () => {
  const r = await lockagent(['demo'], { timeoutMs: 90000 });
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  expect(r.stdout).toMatch(/1\) host 1: virsh start demo-vm[\s\S]*allowed: the disk lease is ours/);
  expect(r.stdout).toMatch(/refused, as virsh would show it:\n.*disk \/var\/lib\/libvirt\/images\/demo\.img is leased by host 1 \(node demo-node1\)/);
  expect(r.stdout).toMatch(/4\) host 2: virsh start again[\s\S]*allowed: host 2 now holds the disk lease/);
}, 120000);
