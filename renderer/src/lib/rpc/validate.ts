/**
 * Checks what the engine sent against the contract's schemas, so state classes get the types
 * they were promised or a clear BAD_RESPONSE error naming the field.
 */
import {
  events,
  formatZodError,
  methods,
  isEventName,
  type EventName,
  type IssueList,
  type EventPayload,
  type MethodName,
  type MethodOutput,
} from '../../../../contract/index.ts';
import { RpcError } from './errors.ts';

/** At most three fields named: enough to find the mismatch, short enough to show. */
const describeIssues = (error: IssueList, root: string) =>
  formatZodError({ issues: error.issues.slice(0, 3) }, root);

export function parseResult<M extends MethodName>(method: M, result: unknown): MethodOutput<M> {
  const parsed = methods[method].output.safeParse(result);
  if (!parsed.success) {
    throw new RpcError(
      'BAD_RESPONSE',
      `The engine's answer to ${method} does not match the contract (${describeIssues(parsed.error, 'result')}).`,
    );
  }
  return parsed.data as MethodOutput<M>;
}

/** Returns the typed payload, or undefined (and logs) when the event is unknown or malformed. */
export function parseEvent(
  event: string,
  data: unknown,
): { event: EventName; data: EventPayload<EventName> } | undefined {
  if (!isEventName(event)) {
    console.warn(`Ignoring unknown event "${event}"`);
    return undefined;
  }
  const parsed = events[event].payload.safeParse(data);
  if (!parsed.success) {
    console.warn(`Ignoring malformed "${event}" event: ${describeIssues(parsed.error, 'payload')}`);
    return undefined;
  }
  return { event, data: parsed.data };
}
