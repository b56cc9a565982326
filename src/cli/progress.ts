// The training rate and time left, from the steps the runs report: measured from the first report on, so the time
// spent starting (workers, data, the first evaluation's compile) does not count as slow training.

export class RateEstimate {
  #first?: { at: number; done: number }
  #last?: { at: number; done: number }

  constructor(private readonly now: () => number = () => performance.now()) {}

  /** `done` steps are finished in all (across runs). */
  update(done: number): void {
    const at = this.now()
    if (!this.#first) this.#first = { at, done }
    this.#last = { at, done }
  }

  /** Seconds covered by the measurement. */
  get seconds(): number {
    return this.#first && this.#last ? (this.#last.at - this.#first.at) / 1000 : 0
  }

  /** Steps per second since the first report; undefined until a second report a moment later. */
  get rate(): number | undefined {
    if (!this.#first || !this.#last || this.seconds < 0.5 || this.#last.done <= this.#first.done) return undefined
    return (this.#last.done - this.#first.done) / this.seconds
  }

  /** Seconds left for `total` steps at that rate. */
  eta(total: number): number | undefined {
    const rate = this.rate
    return rate === undefined ? undefined : Math.max(0, total - this.#last!.done) / rate
  }
}
