/**
 * Runs the state-machine fuzz targets (./targets/machines.ts) with bounded, reproducible
 * runs.
 *
 * Spec: see ./targets/machines.ts.
 */
import { machineTargets } from "./targets/machines.js";
import { registerTargets } from "./run.js";

registerTargets(machineTargets);
