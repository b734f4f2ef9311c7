import { DAEMON_NODE_FLAGS, missingNodeFlags } from '../../src/daemon/nodeflags';

describe('the daemon node flags', () => {
  it('are missing when neither argv nor NODE_OPTIONS has them', () => {
    expect(missingNodeFlags([], '')).toEqual([...DAEMON_NODE_FLAGS]);
    expect(missingNodeFlags(['--inspect'], '--max-old-space-size=100')).toEqual([...DAEMON_NODE_FLAGS]);
  });
  it('count as given from argv or NODE_OPTIONS, with any value and either spelling', () => {
    expect(missingNodeFlags([...DAEMON_NODE_FLAGS], '')).toEqual([]);
    expect(missingNodeFlags([], DAEMON_NODE_FLAGS.join(' '))).toEqual([]);
    expect(missingNodeFlags(['--max_semi_space_size=4', '--heap_growing_percent=20'], '')).toEqual([]);
    expect(missingNodeFlags(['--max-semi-space-size=4'], '')).toEqual(['--heap-growing-percent=50']);
  });
});
