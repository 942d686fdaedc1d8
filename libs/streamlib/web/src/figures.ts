// How the page writes a live figure: a fixed number of digits, "–" when there is none yet.
export function fmt(n: number | null | undefined, digits = 1): string {
  return n === null || n === undefined ? "–" : n.toFixed(digits);
}
