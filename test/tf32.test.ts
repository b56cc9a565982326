// TF32 as PyTorch does it: convolutions may round their inputs to TF32 (10-bit mantissa), matrix products do not,
// unless the device's tf32 option says otherwise. Each result is checked against float64 references computed on
// the inputs as given and on their TF32 roundings; errors are measured against the sum of |terms| of each output.
import { describe, expect, it } from 'vitest'

import { Device, type Tensor } from '../src/index.js'
import { native } from '../src/native.js'
import { cudaSkipReason, emulated } from './helpers/backends.js'
import { randomArray } from './helpers/random.js'

const ops = () => native().ops

/** Round to nearest even at 10 mantissa bits, as tensor cores see fp32 inputs (infinity and NaN unchanged). */
function tf32(values: Float32Array): Float32Array {
  const out = Float32Array.from(values)
  const bits = new Uint32Array(out.buffer)
  for (let i = 0; i < bits.length; i++) {
    const u = bits[i]
    if ((u & 0x7f800000) >>> 0 === 0x7f800000) continue
    bits[i] = ((u + 0xfff + ((u >>> 13) & 1)) & ~0x1fff) >>> 0
  }
  return out
}

/** The largest |actual - expected| relative to the sum of |terms| of the same output. */
function worst(actual: Float32Array, expected: Float64Array, scale: Float64Array): number {
  let e = 0
  for (let i = 0; i < actual.length; i++) e = Math.max(e, Math.abs(actual[i] - expected[i]) / scale[i])
  return e
}

// N x C x H x W input, K x C x 3 x 3 filter, padding 1, stride 1: 36 terms per output, 45 per input gradient.
const [N, C, H, W, K, R] = [2, 4, 6, 6, 5, 3]
const geometry = { strideH: 1, strideW: 1, padH: 1, padW: 1 }

/** y = conv(x, w), dx = conv^T(dy, w), dw = dconv/dw(x, dy) in float64, each with its per-output sum of |terms|. */
function convReference(x: Float32Array, w: Float32Array, dy: Float32Array) {
  const y = new Float64Array(N * K * H * W), yAbs = new Float64Array(y.length)
  const dx = new Float64Array(x.length), dxAbs = new Float64Array(x.length)
  const dw = new Float64Array(w.length), dwAbs = new Float64Array(w.length)
  for (let n = 0; n < N; n++)
    for (let k = 0; k < K; k++)
      for (let oh = 0; oh < H; oh++)
        for (let ow = 0; ow < W; ow++)
          for (let c = 0; c < C; c++)
            for (let i = 0; i < R; i++)
              for (let j = 0; j < R; j++) {
                const ih = oh - 1 + i, iw = ow - 1 + j
                if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue
                const xi = ((n * C + c) * H + ih) * W + iw, wi = ((k * C + c) * R + i) * R + j, yi = ((n * K + k) * H + oh) * W + ow
                y[yi] += x[xi] * w[wi]
                yAbs[yi] += Math.abs(x[xi] * w[wi])
                dx[xi] += dy[yi] * w[wi]
                dxAbs[xi] += Math.abs(dy[yi] * w[wi])
                dw[wi] += x[xi] * dy[yi]
                dwAbs[wi] += Math.abs(x[xi] * dy[yi])
              }
  return { y, yAbs, dx, dxAbs, dw, dwAbs }
}

/** The device's three convolution results for x, w and dy; each output starts poisoned (BSSN_POISON_ALLOCATIONS). */
async function convOnDevice(device: Device, x: Float32Array, w: Float32Array, dy: Float32Array) {
  using xt = device.tensor(x, [N, C, H, W])
  using wt = device.tensor(w, [K, C, R, R])
  using dyt = device.tensor(dy, [N, K, H, W])
  using y = device.empty([N, K, H, W])
  using dx = device.empty([N, C, H, W])
  using dw = device.empty([K, C, R, R])
  ops().conv2d(xt.handle, wt.handle, y.handle, geometry)
  ops().conv2dBackwardData(dx.handle, wt.handle, dyt.handle, geometry)
  ops().conv2dBackwardFilter(xt.handle, dw.handle, dyt.handle, geometry)
  return { y: await y.toArray(), dx: await dx.toArray(), dw: await dw.toArray() }
}

function gemmReference(a: Float32Array, b: Float32Array, m: number, k: number, n: number) {
  const c = new Float64Array(m * n), abs = new Float64Array(m * n)
  for (let i = 0; i < m; i++)
    for (let j = 0; j < n; j++)
      for (let l = 0; l < k; l++) {
        c[i * n + j] += a[i * k + l] * b[l * n + j]
        abs[i * n + j] += Math.abs(a[i * k + l] * b[l * n + j])
      }
  return { c, abs }
}

async function gemmOnDevice(device: Device, a: Float32Array, b: Float32Array, m: number, k: number, n: number) {
  using at = device.tensor(a, [m, k])
  using bt = device.tensor(b, [k, n])
  using c: Tensor = device.empty([m, n])
  ops().gemm(at.handle, bt.handle, c.handle, false, false, 1, 0)
  return c.toArray()
}

// fp32 with exact (emulated) or fp32 (GPU) accumulation stays far below FP32_BOUND; TF32's input rounding (up to
// 2^-11 relative per input) shows well above TF32_SEEN over hundreds of outputs, and stays below TF32_BOUND.
const FP32_BOUND = 4e-6
const TF32_SEEN = 2e-5
const TF32_BOUND = 2 ** -9
// On the emulated device the products of TF32-rounded inputs are exact and summed in double: only the final
// rounding to fp32 remains (a GPU may truncate rather than round, so this check is the emulator's).
const ROUNDED_BOUND = 2 ** -22

describe('tf32 option', () => {
  it('TF32 rounding here is to nearest even at 10 mantissa bits (the reference the checks below rely on)', () => {
    const one = 1, ulp = 2 ** -10
    const cases = Float32Array.from([one + ulp / 2, one + ulp * 1.5, one + ulp / 2 + 2 ** -20, -(one + ulp * 0.25), Infinity, 3])
    expect(Array.from(tf32(cases))).toEqual([one, one + 2 * ulp, one + ulp, -one, Infinity, 3])
  })

  it('defaults as PyTorch (conv on, matmul off), takes partial updates and refuses bad values, on the CPU too', () => {
    for (const device of [Device.cpu(), ...(cudaSkipReason() === undefined ? [Device.cuda(0)] : [])]) {
      expect(device.tf32).toEqual({ conv: true, matmul: false })
      try {
        device.tf32 = { matmul: true }
        expect(device.tf32).toEqual({ conv: true, matmul: true })
        device.tf32 = { conv: false }
        expect(device.tf32).toEqual({ conv: false, matmul: true })
        expect(() => (device.tf32 = { conv: 1 as never })).toThrow(/expected tf32.conv to be a boolean/)
        expect(() => (device.tf32 = { cudnn: true } as never)).toThrow(/unknown tf32 option 'cudnn'/)
        expect(() => (device.tf32 = null as never)).toThrow(TypeError)
        expect(() => ((device.tf32 as { conv: boolean }).conv = true)).toThrow(TypeError)
        expect(device.tf32).toEqual({ conv: false, matmul: true })
      } finally {
        device.tf32 = { conv: true, matmul: false }
      }
    }
  })
})

const reason = cudaSkipReason()
;(reason === undefined ? describe : describe.skip)(`tf32 on cuda${reason ? ` (skipped: ${reason})` : ''}`, () => {
  const x = randomArray(N * C * H * W, 11)
  const w = randomArray(K * C * R * R, 12)
  const dy = randomArray(N * K * H * W, 13)
  const exact = convReference(x, w, dy)
  const rounded = convReference(tf32(x), tf32(w), tf32(dy))

  it('convolutions: TF32 by default (rounded inputs, visibly not fp32); fp32-tight with conv off; switching back works', async () => {
    const device = Device.cuda(0)
    try {
      for (const conv of [true, false, true]) {
        device.tf32 = { conv }
        const got = await convOnDevice(device, x, w, dy)
        for (const [name, actual, ref, refRounded, abs] of [
          ['forward', got.y, exact.y, rounded.y, exact.yAbs],
          ['backward data', got.dx, exact.dx, rounded.dx, exact.dxAbs],
          ['backward filter', got.dw, exact.dw, rounded.dw, exact.dwAbs],
        ] as const) {
          const error = worst(actual, ref, abs)
          if (conv) {
            expect(error, `${name}: TF32 visible`).toBeGreaterThan(TF32_SEEN)
            expect(error, `${name}: within TF32's bound`).toBeLessThan(TF32_BOUND)
            if (emulated) expect(worst(actual, refRounded, abs), `${name}: TF32-rounded reference`).toBeLessThan(ROUNDED_BOUND)
          } else {
            expect(error, `${name}: fp32`).toBeLessThan(FP32_BOUND)
          }
        }
      }
    } finally {
      device.tf32 = { conv: true, matmul: false }
    }
  })

  it('matrix products: fp32 by default; TF32 (rounded inputs) with matmul on; fp32 again when turned off', async () => {
    const device = Device.cuda(0)
    const [m, k, n] = [24, 64, 20]
    const a = randomArray(m * k, 21)
    const b = randomArray(k * n, 22)
    const ref = gemmReference(a, b, m, k, n)
    const refRounded = gemmReference(tf32(a), tf32(b), m, k, n)
    try {
      expect(worst(await gemmOnDevice(device, a, b, m, k, n), ref.c, ref.abs), 'default: fp32').toBeLessThan(FP32_BOUND)
      device.tf32 = { matmul: true }
      const c = await gemmOnDevice(device, a, b, m, k, n)
      expect(worst(c, ref.c, ref.abs), 'TF32 visible').toBeGreaterThan(TF32_SEEN)
      expect(worst(c, ref.c, ref.abs), "within TF32's bound").toBeLessThan(TF32_BOUND)
      if (emulated) expect(worst(c, refRounded.c, ref.abs), 'TF32-rounded reference').toBeLessThan(ROUNDED_BOUND)
      device.tf32 = { matmul: false }
      expect(worst(await gemmOnDevice(device, a, b, m, k, n), ref.c, ref.abs), 'off again: fp32').toBeLessThan(FP32_BOUND)
    } finally {
      device.tf32 = { conv: true, matmul: false }
    }
  })
})
