/**
 * Backends our native trainer was built with. The native addon (native/) reports them in its
 * build info; until that binding is wired in here, the trainer is known to have CPU only.
 * Keep this the one place that answers the question, so wiring it is a one-function change.
 */
export function trainerBackends(): string[] {
  return ['cpu'];
}
