/** The cleanup sweeper: classify and delete unused lease files of disk_lease_dir (docs/cleanup.md). */
export * from './classify';
export { joinedView, WatchView } from './liveness';
export * from './report';
export { dryRunStandalone, isSweeping, sweep, sweeperOwner } from './sweep';
export type { SweepDeps, SweepHooks, SweepOptions } from './sweep';
export { cleanupExtension, logReport } from './extension';
export type { CleanupExtensionOptions } from './extension';
export { registerCleanupCommand } from './command';
