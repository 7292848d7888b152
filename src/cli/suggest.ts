/** Longer input is not a typo of any command or option: no suggestion, and no quadratic work on it. */
const MAX_INPUT = 64

/**
 * The valid names nearest to a mistyped one, for "did you mean …?": those at the smallest edit
 * distance (a swap of two neighbours counts as one edit) within a third of the name's length (at
 * least one edit), or else those the input is the start of (`--target` → `--target-url`).
 */
export function nearest(input: string, candidates: readonly string[]): string[] {
  if (input.length === 0 || input.length > MAX_INPUT) return []
  let best = Number.POSITIVE_INFINITY
  let found: string[] = []
  for (const candidate of candidates) {
    const distance = editDistance(input, candidate)
    if (distance > Math.max(1, Math.floor(Math.max(input.length, candidate.length) / 3))) continue
    if (distance < best) {
      best = distance
      found = [candidate]
    } else if (distance === best) {
      found.push(candidate)
    }
  }
  if (found.length > 0) return found
  // Three characters past the dashes at least: "--a" is the start of too much to mean anything.
  if (input.replace(/^-+/, '').length < 3) return []
  return candidates.filter((candidate) => candidate.startsWith(input))
}

/** ` Did you mean "publish"?`, or '' when nothing is near; `show` writes each name as it is typed. */
export function didYouMean(
  input: string,
  candidates: readonly string[],
  show: (name: string) => string = (name) => `"${name}"`,
): string {
  const names = nearest(input, candidates).map(show)
  if (names.length === 0) return ''
  const list = names.length === 1 ? names[0] : `${names.slice(0, -1).join(', ')} or ${names.at(-1)}`
  return ` Did you mean ${list}?`
}

/** Optimal string alignment distance: insertions, deletions, substitutions and adjacent swaps. */
function editDistance(a: string, b: string): number {
  const rows = a.length + 1
  const columns = b.length + 1
  const d: number[] = new Array(rows * columns).fill(0)
  for (let i = 0; i < rows; i++) d[i * columns] = i
  for (let j = 0; j < columns; j++) d[j] = j
  for (let i = 1; i < rows; i++) {
    for (let j = 1; j < columns; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1
      let value = Math.min(
        d[(i - 1) * columns + j]! + 1,
        d[i * columns + j - 1]! + 1,
        d[(i - 1) * columns + j - 1]! + cost,
      )
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        value = Math.min(value, d[(i - 2) * columns + j - 2]! + 1)
      }
      d[i * columns + j] = value
    }
  }
  return d[rows * columns - 1]!
}
