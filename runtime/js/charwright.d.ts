// Types of charwright.js (written by `charwright emit-web`).

/** A seed or row: 0..2**63-1 as decimal digits, a BigInt, or a Number up to 2**53 - 1. */
export type Seed = string | bigint | number;

/** The sampling chain's settings (SAMPLING.md section 3; null or absent: the bundle's default,
 * else the neutral value). */
export interface SamplingOptions {
  /** 0 (greedy) or 0.0001..1000; default the bundle's, else 0.8 in generate, 1 in sampler. */
  temperature?: number | null;
  /** Keep the k most likely ids (>= 1). */
  topK?: number | null;
  /** Nucleus sampling, in (0, 1]. */
  topP?: number | null;
  /** Keep ids with p >= minP x the top p, in [0, 1). */
  minP?: number | null;
  /** Locally typical sampling, in (0, 1]. */
  typicalP?: number | null;
  /** CTRL penalty on the last repetitionWindow ids, 0.01..100 (1 = off). */
  repetitionPenalty?: number | null;
  /** 1..65536, default 64. */
  repetitionWindow?: number | null;
  /** Always the most likely id (no coin drawn). */
  greedy?: boolean;
  /** Random (63 bits from crypto.getRandomValues) when absent. */
  seed?: Seed | null;
}

export interface GenerateOptions extends SamplingOptions {
  /** The text ends before the first stop string that appears (never yielded); at most 256. */
  stop?: string | string[] | null;
  /** Characters picked at most (default 300; an end-of-sequence id counts). */
  maxChars?: number;
  /** Prompt characters outside the vocabulary: a RangeError (default), skipped, or replaced
   * by ' ' (else the first character). */
  unknown?: 'error' | 'skip' | 'replace';
}

export interface SamplerOptions extends SamplingOptions {
  /** The coin stream's row (default 0). */
  row?: Seed;
  /** The ids the repetition penalty's window starts with (a prompt's ids). */
  history?: number[];
}

/** The pieces of text after the prompt, as they are made (the first character alone, then the
 * characters made within about 1 ms as one piece). */
export interface Generation extends AsyncGenerator<string, void, undefined> {
  /** The seed used (the one given, or the random one drawn). */
  readonly seed: bigint;
  /** null while running; then 'eos' (end-of-sequence id), 'stop' (a stop string) or 'length'. */
  readonly finishReason: 'eos' | 'stop' | 'length' | null;
}

export interface Sampler {
  readonly seed: bigint;
  /** One id from 1..65536 logits; each pick draws the row's next coin. */
  pick(logits: Float32Array | number[]): number;
}

export interface Model {
  readonly info: {
    readonly name: string;
    readonly precision: 'float32' | 'int8';
    /** sha256 of the bundle's manifest.json */
    readonly sha256: string;
    /** the build's matrix-vector kernels: 'WASM SIMD128' or 'scalar' */
    readonly kernel: string;
  };
  /** Id -> character; null at the end-of-sequence id of a line-mode model. */
  readonly vocab: readonly (string | null)[];
  /** The bundle's sampling defaults. */
  readonly defaults: SamplingOptions;
  /** A prompt's ids (SAMPLING.md section 4). */
  encode(prompt: string, unknown?: 'error' | 'skip' | 'replace'): number[];
  /** Throws TypeError / RangeError for bad options, synchronously. */
  generate(prompt: string, options?: GenerateOptions): Generation;
  /** SAMPLING.md's sampler over logits you compute; no bundle defaults apply. */
  sampler(options?: SamplerOptions): Sampler;
  /** The k-th raw splitmix64 draw of (seed, row) (SAMPLING.md section 1). */
  rng(seed: Seed, row: Seed, k: number): bigint;
}

/** A directory that is not a charwright-web build, or is damaged. */
export class CharwrightError extends Error {}

/** Loads what `charwright emit-web` wrote: a directory path (Node), a URL (or a string relative
 * to the page), or File objects holding charwright.wasm and model.json. */
export function load(bundle: string | URL | FileList | File[]): Promise<Model>;

/** A seed as a BigInt in 0..2**63-1 (RangeError / TypeError otherwise). */
export function parseSeed(seed: Seed, where?: string): bigint;
