// Stable error codes (`error.code`), as Node's own errors carry: the native addon sets them on its errors
// (native/core/error.h), and the TypeScript layer uses the same names.
export type BssnErrorCode =
  | 'ERR_BSSN_DISPOSED'
  | 'ERR_BSSN_OUT_OF_MEMORY'
  | 'ERR_BSSN_CUDA_UNAVAILABLE'
  | 'ERR_BSSN_DEVICE_FAULT'
  | 'ERR_BSSN_LIBRARY_MISSING'
  | 'ERR_BSSN_SHARE_GONE'
  | 'ERR_BSSN_CAPTURE'
  | 'ERR_BSSN_COLLECTIVE_FAILED'
  | 'ERR_BSSN_INVALID_ARGUMENT'
  | 'ERR_BSSN_OUT_OF_RANGE'
  | 'ERR_BSSN_BAD_CHECKPOINT'
  | 'ERR_BSSN_BAD_DATASET'
  | 'ERR_BSSN_RENDEZVOUS_TIMEOUT'
  | 'ERR_BSSN_RENDEZVOUS_REFUSED'
  | 'ERR_BSSN_RENDEZVOUS_LOST'
  | 'ERR_BSSN_RENDEZVOUS_FAILED'
  | 'ERR_BSSN_FAILED'

/** An Error with a stable `code`. */
export function bssnError(message: string, code: BssnErrorCode): Error {
  return Object.assign(new Error(message), { code })
}

/** A TypeError with code ERR_BSSN_INVALID_ARGUMENT (what the native side gives its TypeErrors too). */
export function typeError(message: string): TypeError {
  return Object.assign(new TypeError(message), { code: 'ERR_BSSN_INVALID_ARGUMENT' as const })
}

/** A RangeError with code ERR_BSSN_OUT_OF_RANGE. */
export function rangeError(message: string): RangeError {
  return Object.assign(new RangeError(message), { code: 'ERR_BSSN_OUT_OF_RANGE' as const })
}
