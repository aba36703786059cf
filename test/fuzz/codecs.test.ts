/**
 * Runs the codec fuzz targets (./targets/codecs.ts) with bounded, reproducible runs.
 *
 * Spec: see ./targets/codecs.ts.
 */
import { codecTargets } from "./targets/codecs.js";
import { registerTargets } from "./run.js";

registerTargets(codecTargets);
