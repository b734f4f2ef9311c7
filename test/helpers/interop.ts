/**
 * Gate for tests against the real sanlock 3.8.5 binary. Without /usr/sbin/sanlock the suite is
 * skipped with a loud message on a developer machine, and fails in CI (CI set), where its absence
 * means the setup is broken.
 */
import { SANLOCK, sanlockInstalled } from './cli';

export function describeInterop(name: string, fn: () => void): void {
  if (sanlockInstalled()) {
    describe(name, fn);
    return;
  }
  if (process.env.CI) {
    describe(name, () => {
      it(`needs the real sanlock binary at ${SANLOCK}`, () => {
        throw new Error(`${SANLOCK} is missing; CI must install the Debian sanlock package (scripts/setup.sh)`);
      });
    });
    return;
  }
  console.warn(
    `\n*** SKIPPING interop suite "${name}": ${SANLOCK} is not installed. ` +
      'Install the Debian "sanlock" package to compare lockagent with the real sanlock 3.8.5. ***\n',
  );
  describe.skip(name, fn);
}
