/**
 * Collects problems: keeps the first `cap` in full (in file order), counts every one by code,
 * so a file with a million bad lines reports a bounded list plus an exact summary.
 */
import type { Problem, ProblemCode, ProblemReport, ProblemSummaryItem } from './types.ts';

export const defaultProblemCap = 200;

export class ProblemCollector {
  readonly items: Problem[] = [];
  private readonly byCode = new Map<string, ProblemSummaryItem>();
  errors = 0;
  warnings = 0;
  constructor(
    readonly file: string,
    readonly cap = defaultProblemCap,
  ) {}

  add(line: number, p: Omit<Problem, 'file' | 'line'>): void {
    if (p.severity === 'error') this.errors++;
    else this.warnings++;
    const key = `${p.severity}:${p.code}`;
    const s = this.byCode.get(key);
    if (s) s.count++;
    else
      this.byCode.set(key, {
        code: p.code as ProblemCode,
        severity: p.severity,
        count: 1,
        firstLine: line,
      });
    if (this.items.length < this.cap) this.items.push({ file: this.file, line, ...p });
  }

  report(): ProblemReport {
    return {
      items: this.items.slice(),
      summary: [...this.byCode.values()].sort((a, b) =>
        a.severity === b.severity ? b.count - a.count : a.severity === 'error' ? -1 : 1,
      ),
      errors: this.errors,
      warnings: this.warnings,
      truncated: this.errors + this.warnings > this.items.length,
    };
  }
}

/** One line per problem, as the CLI prints it: `file:12: messages[1].role: expected ..., found ...`. */
export function formatProblem(p: Problem): string {
  const where = p.field ? ` ${p.field}:` : '';
  return `${p.file}:${p.line}:${where} ${p.severity === 'warning' ? 'warning: ' : ''}expected ${p.expected}, found ${p.found}`;
}

/** A short summary: "3 errors (2 invalid_json, 1 unknown_role), 1 warning (1 no_final_assistant)". */
export function summarizeProblems(r: ProblemReport): string {
  const part = (sev: 'error' | 'warning', n: number) => {
    const items = r.summary.filter((s) => s.severity === sev).map((s) => `${s.count} ${s.code}`);
    return `${n} ${sev}${n === 1 ? '' : 's'}${items.length ? ` (${items.join(', ')})` : ''}`;
  };
  return `${part('error', r.errors)}, ${part('warning', r.warnings)}`;
}
