/**
 * The model hub: search Hugging Face for GGUF repositories, list a repository's files with a
 * "will it train here?" verdict for each, and download a file into the model library (resume,
 * cancel, sha256 check). The engine talks to the hub; shells only call these methods.
 */
import { z } from 'zod';
import { event, method } from './define.ts';
import { memoryVerdicts } from './runs.ts';

export const hubSortSchema = z.enum(['downloads', 'likes']);

export const hubRepoSchema = z.object({
  /** "owner/name" */
  id: z.string(),
  downloads: z.number().int().nonnegative(),
  likes: z.number().int().nonnegative(),
  /** False, or how access is granted ("auto" / "manual"): downloads then need a token. */
  gated: z.union([z.literal(false), z.string()]),
  tags: z.array(z.string()),
  lastModified: z.string().nullable(),
});
export type HubRepo = z.infer<typeof hubRepoSchema>;

/** The memory badge: the training page's estimate at the default config for this machine. */
export const hubFitSchema = z.object({
  verdict: z.enum([...memoryVerdicts, 'unknown']),
  /** Estimated peak bytes (null when the model's dimensions are unknown). */
  totalBytes: z.number().nonnegative().nullable(),
  device: z.string(),
  deviceFreeBytes: z.number().nonnegative(),
  sequenceLength: z.number().int().positive(),
  /** Why the verdict is unknown, in plain words. */
  reason: z.string().nullable(),
});
export type HubFit = z.infer<typeof hubFitSchema>;

export const trainVerdictSchema = z.object({
  architecture: z.string().nullable(),
  /** header: read from the GGUF header (HTTP Range); metadata: the hub's model card data; unknown. */
  source: z.enum(['header', 'metadata', 'unknown']),
  /** Null when the architecture is unknown. */
  supported: z.boolean().nullable(),
  /** Why not (or why unknown); null when supported. */
  reason: z.string().nullable(),
  fit: hubFitSchema,
});
export type TrainVerdict = z.infer<typeof trainVerdictSchema>;

export const hubFileSchema = z.object({
  /** Path inside the repository, e.g. "model-Q4_K_M.gguf". */
  path: z.string(),
  size: z.number().int().nonnegative(),
  /** The sha256 Hugging Face publishes for the file (LFS oid), hex; null when none. */
  sha256: z.string().nullable(),
  /** Quantization read from the file name (Q4_K_M, Q8_0, F16, ...), or null. */
  quantization: z.string().nullable(),
  /** `hf:owner/name/path`, what `models pull` takes. */
  uri: z.string(),
  verdict: trainVerdictSchema,
});
export type HubFile = z.infer<typeof hubFileSchema>;

export const hubRepoFilesSchema = z.object({
  repo: z.string(),
  gated: z.union([z.literal(false), z.string()]),
  files: z.array(hubFileSchema),
});
export type HubRepoFiles = z.infer<typeof hubRepoFilesSchema>;

export const downloadStates = [
  'downloading',
  'verifying',
  'completed',
  'failed',
  'cancelled',
] as const;

export const hubDownloadSchema = z.object({
  id: z.string(),
  uri: z.string(),
  repo: z.string(),
  file: z.string(),
  /** Where the file lands (inside the data dir's models/ folder). */
  destination: z.string(),
  state: z.enum(downloadStates),
  receivedBytes: z.number().int().nonnegative(),
  totalBytes: z.number().int().nonnegative().nullable(),
  /** Bytes taken from a .part file left by an earlier, interrupted download. */
  resumedFrom: z.number().int().nonnegative(),
  bytesPerSecond: z.number().nonnegative(),
  etaSeconds: z.number().nonnegative().nullable(),
  /** The sha256 the file is checked against (null: the hub published none). */
  sha256: z.string().nullable(),
  error: z.string().nullable(),
  /** The library entry once completed. */
  modelId: z.string().nullable(),
  startedAt: z.string(),
});
export type HubDownload = z.infer<typeof hubDownloadSchema>;

export const recommendedModelSchema = z.object({
  repo: z.string(),
  /** The file to start with (a Q4_K_M or Q8_0 quantization). */
  file: z.string(),
  uri: z.string(),
  parameters: z.string(),
  architecture: z.string(),
  why: z.string(),
});
export type RecommendedModel = z.infer<typeof recommendedModelSchema>;

export const tokenStatusSchema = z.object({
  hasToken: z.boolean(),
  /** Where it is kept: the OS secret store (desktop app) or a 0600 file in the data dir. */
  storage: z.enum(['os-secret-store', 'file']),
});

const repoId = z.string().min(1).max(200);

export const hubMethods = {
  'hub.search': method(
    z.object({
      query: z.string().max(200),
      sort: hubSortSchema.default('downloads'),
      limit: z.number().int().min(1).max(100).default(20),
    }),
    z.array(hubRepoSchema),
    'Search Hugging Face for GGUF repositories.',
  ),
  'hub.files': method(
    z.object({ repo: repoId }),
    hubRepoFilesSchema,
    "A repository's GGUF files with size, quantization and whether each will train here.",
  ),
  'hub.download': method(
    z.object({ uri: z.string().min(1).max(1000) }),
    hubDownloadSchema,
    'Start downloading hf:owner/name/file.gguf into the model library (resumes a .part file).',
  ),
  'hub.cancel': method(
    z.object({ id: z.string().min(1) }),
    hubDownloadSchema,
    'Cancel a download (its .part file is removed).',
  ),
  'hub.downloads': method(z.object({}), z.array(hubDownloadSchema), 'Downloads of this session.'),
  'hub.recommended': method(
    z.object({}),
    z.array(recommendedModelSchema),
    'Curated starting models for LoRA on one GPU.',
  ),
  'hub.modelFits': method(
    z.object({}),
    z.array(z.object({ id: z.string(), fit: hubFitSchema })),
    "The memory badge of every library model for this machine's training device.",
  ),
  'hub.tokenStatus': method(z.object({}), tokenStatusSchema, 'Whether an access token is set.'),
  'hub.setToken': method(
    z.object({ token: z.string().max(400).nullable() }),
    tokenStatusSchema,
    'Set (or clear with null) the Hugging Face access token for gated models.',
  ),
} as const;

export const hubEvents = {
  'hub.download': event(hubDownloadSchema, 'A download progressed or changed state.'),
} as const;
