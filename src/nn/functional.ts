// Differentiable tensor ops: each enqueues its native op and, when an input needs gradients, records how to
// compute the inputs' gradients. No math here: the native ops do it on the tensors' device.
import { record } from '../autograd/tape.js'
import { BinaryOpCode, native, UnaryOpCode } from '../native.js'
import { checkTensor, type Tensor } from '../tensor.js'
import { checkBoolean, checkInteger, checkNumber, checkOptions, describe } from '../validate.js'
import { typeError, rangeError } from '../errors.js'

const ops = () => native().ops

function sameShape(a: Tensor, b: Tensor, op: string): void {
  if (a.size !== b.size || a.shape.length !== b.shape.length || a.shape.some((d, i) => d !== b.shape[i]))
    throw rangeError(`${op}: shapes [${a.shape.join(', ')}] and [${b.shape.join(', ')}] differ (no broadcasting)`)
}

function unary(x: Tensor, op: UnaryOpCode, param: number, name: string, savesOutput: boolean): Tensor {
  checkTensor(x, 'x')
  const y = x.device.empty(x.shape)
  ops().unary(op, param, x.handle, y.handle)
  return record(y, [x], name, (gy) => {
    const gx = x.device.empty(x.shape)
    ops().unaryBackward(op, param, savesOutput ? null : x.handle, savesOutput ? y.handle : null, gy.handle, gx.handle)
    return [gx]
  })
}

export const relu = (x: Tensor): Tensor => unary(x, UnaryOpCode.Relu, 0, 'relu', false)
export const leakyRelu = (x: Tensor, slope = 0.01): Tensor => unary(x, UnaryOpCode.LeakyRelu, slope, 'leakyRelu', false)
export const tanh = (x: Tensor): Tensor => unary(x, UnaryOpCode.Tanh, 0, 'tanh', true)
export const sigmoid = (x: Tensor): Tensor => unary(x, UnaryOpCode.Sigmoid, 0, 'sigmoid', true)
/** a * x */
export const scale = (x: Tensor, a: number): Tensor => unary(x, UnaryOpCode.Scale, a, 'scale', false)
/** x + b (b a number) */
export const addScalar = (x: Tensor, b: number): Tensor => unary(x, UnaryOpCode.AddScalar, b, 'addScalar', false)
export const neg = (x: Tensor): Tensor => scale(x, -1)

function binary(a: Tensor, b: Tensor, op: BinaryOpCode, name: string): Tensor {
  checkTensor(a, 'a')
  checkTensor(b, 'b')
  sameShape(a, b, name)
  const out = a.device.empty(a.shape)
  ops().binary(op, a.handle, b.handle, out.handle)
  return record(out, [a, b], name, (g) => {
    if (op === BinaryOpCode.Mul) {
      const ga = a.requiresGrad ? a.device.empty(a.shape) : undefined
      const gb = b.requiresGrad ? b.device.empty(b.shape) : undefined
      if (ga) ops().binary(BinaryOpCode.Mul, g.handle, b.handle, ga.handle)
      if (gb) ops().binary(BinaryOpCode.Mul, g.handle, a.handle, gb.handle)
      return [ga, gb]
    }
    const ga = a.requiresGrad ? g.clone() : undefined
    const gb = b.requiresGrad ? (op === BinaryOpCode.Sub ? neg(g) : g.clone()) : undefined
    return [ga, gb]
  })
}

export const add = (a: Tensor, b: Tensor): Tensor => binary(a, b, BinaryOpCode.Add, 'add')
export const sub = (a: Tensor, b: Tensor): Tensor => binary(a, b, BinaryOpCode.Sub, 'sub')
export const mul = (a: Tensor, b: Tensor): Tensor => binary(a, b, BinaryOpCode.Mul, 'mul')

function reduce(x: Tensor, factor: number, name: string): Tensor {
  checkTensor(x, 'x')
  const out = x.device.empty([])
  ops().sum(x.handle, out.handle, factor)
  return record(out, [x], name, (g) => {
    const gx = x.device.empty(x.shape)
    ops().broadcast(g.handle, gx.handle, factor)
    return [gx]
  })
}

/** scale * the sum of all elements (a 0-D tensor): one launch where sum then scale would be two. */
export const scaledSum = (x: Tensor, scale: number): Tensor => reduce(x, checkNumber(scale, 'scale'), 'scaledSum')

/**
 * The discriminator's hinge loss over scores whose first `split` elements are real and the rest fake:
 * scaleReal * sum(relu(1 - real)) + scaleFake * sum(relu(1 + fake)) (a 0-D tensor), one launch forward and one
 * backward.
 */
export function hinge(x: Tensor, split: number, scaleReal: number, scaleFake: number): Tensor {
  checkTensor(x, 'x')
  checkInteger(split, 'split', 0)
  if (split > x.size) throw rangeError(`hinge: split ${split} is beyond the ${x.size} scores`)
  checkNumber(scaleReal, 'scaleReal')
  checkNumber(scaleFake, 'scaleFake')
  const out = x.device.empty([])
  ops().hinge(x.handle, out.handle, split, scaleReal, scaleFake)
  return record(out, [x], 'hinge', (g) => {
    const gx = x.device.empty(x.shape)
    ops().hingeBackward(x.handle, g.handle, gx.handle, split, scaleReal, scaleFake)
    return [gx]
  })
}

/** The tensors joined along their first dimension (the others equal): device copies, no kernel. */
export function cat(tensors: readonly Tensor[]): Tensor {
  if (!Array.isArray(tensors) || tensors.length === 0) throw typeError('cat: expected a non-empty array of tensors')
  tensors.forEach((t, i) => checkTensor(t, `tensors[${i}]`))
  const [first] = tensors
  const rest = first.shape.slice(1)
  for (const t of tensors)
    if (t.shape.length !== first.shape.length || t.shape.slice(1).some((d: number, i: number) => d !== rest[i]) || !t.device.equals(first.device))
      throw rangeError(`cat: [${t.shape.join(', ')}] cannot join [${first.shape.join(', ')}] along the first dimension`)
  const out = first.device.empty([tensors.reduce((n, t) => n + t.shape[0], 0), ...rest])
  const offsets: number[] = []
  let offset = 0
  for (const t of tensors) {
    offsets.push(offset)
    ops().copyRange(out.handle, offset, t.handle, 0, t.size)
    offset += t.size
  }
  return record(out, tensors, 'cat', (g) =>
    tensors.map((t, i) => {
      if (!t.requiresGrad) return undefined
      const gt = t.device.empty(t.shape)
      ops().copyRange(gt.handle, 0, g.handle, offsets[i], t.size)
      return gt
    }),
  )
}

/** The sum of all elements (a 0-D tensor). */
export const sum = (x: Tensor): Tensor => reduce(x, 1, 'sum')
/** The mean of all elements (a 0-D tensor). */
export const mean = (x: Tensor): Tensor => {
  checkTensor(x, 'x')
  return reduce(x, 1 / Math.max(x.size, 1), 'mean')
}

/** a [m, k] times b [k, n] (either transposed first when asked), as a [m, n] tensor. */
export function matmul(a: Tensor, b: Tensor, options: { transA?: boolean; transB?: boolean } = {}): Tensor {
  checkTensor(a, 'a')
  checkTensor(b, 'b')
  const o = checkOptions(options)
  const ta = checkBoolean(o.transA ?? false, 'transA')
  const tb = checkBoolean(o.transB ?? false, 'transB')
  if (a.shape.length !== 2 || b.shape.length !== 2)
    throw rangeError(`matmul: expected 2-D tensors, got [${a.shape.join(', ')}] and [${b.shape.join(', ')}]`)
  const m = ta ? a.shape[1] : a.shape[0]
  const n = tb ? b.shape[0] : b.shape[1]
  const out = a.device.empty([m, n])
  ops().gemm(a.handle, b.handle, out.handle, ta, tb, 1, 0)
  return record(out, [a, b], 'matmul', (g) => {
    // C = op(A) op(B): dop(A) = G op(B)^T, dop(B) = op(A)^T G, transposed back where A or B was.
    let ga: Tensor | undefined
    let gb: Tensor | undefined
    if (a.requiresGrad) {
      ga = a.device.empty(a.shape)
      if (ta) ops().gemm(b.handle, g.handle, ga.handle, tb, true, 1, 0) // dA = op(B) G^T
      else ops().gemm(g.handle, b.handle, ga.handle, false, !tb, 1, 0) // dA = G op(B)^T
    }
    if (b.requiresGrad) {
      gb = b.device.empty(b.shape)
      if (tb) ops().gemm(g.handle, a.handle, gb.handle, true, ta, 1, 0) // dB = G^T op(A)
      else ops().gemm(a.handle, g.handle, gb.handle, !ta, false, 1, 0) // dB = op(A)^T G
    }
    return [ga, gb]
  })
}

/** x + bias along `axis` (1: the channels of [N, C, ...]). */
export function addBias(x: Tensor, bias: Tensor, axis = 1): Tensor {
  checkTensor(x, 'x')
  checkTensor(bias, 'bias')
  const out = x.device.empty(x.shape)
  ops().addBias(x.handle, bias.handle, out.handle, axis)
  return record(out, [x, bias], 'addBias', (g) => {
    const gx = x.requiresGrad ? g.clone() : undefined
    let gb: Tensor | undefined
    if (bias.requiresGrad) {
      gb = bias.device.empty(bias.shape)
      ops().sumToBias(g.handle, gb.handle, axis)
    }
    return [gx, gb]
  })
}

/** An activation a layer can apply to its output in the same launch as its bias. */
export type Activation = 'relu' | 'leakyRelu' | 'tanh' | 'sigmoid'

export interface ActivationOptions {
  /** Applied to the layer's output, fused with the bias add (one launch forward, one backward). */
  activation?: Activation
  /** leakyRelu's negative slope (default 0.01, as leakyRelu's). */
  slope?: number
}

const activationCodes: Record<Activation, UnaryOpCode> = {
  relu: UnaryOpCode.Relu,
  leakyRelu: UnaryOpCode.LeakyRelu,
  tanh: UnaryOpCode.Tanh,
  sigmoid: UnaryOpCode.Sigmoid,
}

function checkActivation(options: ActivationOptions | undefined): { op: UnaryOpCode; param: number; name: Activation } | undefined {
  const o = checkOptions(options)
  if (o.activation === undefined) {
    if (o.slope !== undefined) throw typeError('slope is given without activation: \'leakyRelu\'')
    return undefined
  }
  if (typeof o.activation !== 'string' || !Object.hasOwn(activationCodes, o.activation))
    throw typeError(`expected activation to be one of ${Object.keys(activationCodes).join(', ')}, got ${describe(o.activation)}`)
  if (o.slope !== undefined && o.activation !== 'leakyRelu') throw typeError(`slope is leakyRelu's, not ${o.activation}'s`)
  const param = o.activation === 'leakyRelu' ? checkNumber(o.slope ?? 0.01, 'slope') : 0
  return { op: activationCodes[o.activation], param, name: o.activation }
}

function activate(x: Tensor, act: { op: UnaryOpCode; param: number; name: Activation }): Tensor {
  return unary(x, act.op, act.param, act.name, act.op === UnaryOpCode.Tanh || act.op === UnaryOpCode.Sigmoid)
}

/**
 * A layer's output y plus bias, then the activation if one is asked: one node and one launch each way (the fused
 * backward takes the derivative from the output and sums the bias gradient in the same pass). Disposes y when no
 * graph holds it.
 */
function finish(y: Tensor, bias: Tensor | undefined, act: ReturnType<typeof checkActivation>): Tensor {
  if (bias !== undefined) checkTensor(bias, 'bias')
  let out: Tensor
  if (!bias) {
    if (!act) return y
    out = activate(y, act)
  } else if (!act) {
    out = addBias(y, bias, 1)
  } else if (act.op === UnaryOpCode.LeakyRelu && !(act.param >= 0)) {
    // y's sign no longer gives the input's: the unfused pair, which keeps the input.
    const pre = addBias(y, bias, 1)
    out = activate(pre, act)
    if (!out.requiresGrad) pre.dispose()
  } else {
    out = y.device.empty(y.shape)
    ops().biasActivation(act.op, act.param, y.handle, bias.handle, out.handle, 1)
    record(out, [y, bias], `addBias+${act.name}`, (g) => {
      const gy = y.requiresGrad ? y.device.empty(y.shape) : undefined
      const gb = bias.requiresGrad ? bias.device.empty(bias.shape) : undefined
      ops().biasActivationBackward(act.op, act.param, out.handle, g.handle, gy?.handle ?? null, gb?.handle ?? null, false, 1)
      return [gy, gb]
    })
  }
  if (!out.requiresGrad) y.dispose() // no graph holds y: free it now
  return out
}

/**
 * x [N, in] times weight [out, in] transposed, plus bias [out]: a fully connected layer, with `activation`
 * applied in the bias's launch.
 */
export function linear(x: Tensor, weight: Tensor, bias?: Tensor, options?: ActivationOptions): Tensor {
  if (bias !== undefined) checkTensor(bias, 'bias')
  const act = checkActivation(options)
  return finish(matmul(x, weight, { transB: true }), bias, act)
}

export interface Conv2dOptions extends ActivationOptions {
  stride?: number | readonly [number, number]
  padding?: number | readonly [number, number]
}

function pair(v: number | readonly [number, number] | undefined, fallback: number, what: string): [number, number] {
  if (v !== undefined && typeof v !== 'number' && !(Array.isArray(v) && v.length === 2))
    throw typeError(`expected ${what} to be a number or a pair of numbers, got ${describe(v)}`)
  const [a, b] = v === undefined ? [fallback, fallback] : typeof v === 'number' ? [v, v] : v
  if (!Number.isInteger(a) || !Number.isInteger(b) || a < 0 || b < 0) throw rangeError(`expected ${what} to be non-negative integers, got ${String(v)}`)
  return [a, b]
}

function geometry(options: Conv2dOptions | undefined) {
  options = checkOptions(options)
  const [strideH, strideW] = pair(options.stride, 1, 'stride')
  const [padH, padW] = pair(options.padding, 0, 'padding')
  if (strideH < 1 || strideW < 1) throw rangeError('expected stride >= 1')
  return { strideH, strideW, padH, padW }
}

function check4d(t: Tensor, what: string): void {
  if (t.shape.length !== 4) throw rangeError(`expected ${what} to be 4-D, got [${t.shape.join(', ')}]`)
}

/** 2-D convolution (cross-correlation) of x [N, Cin, H, W] with weight [Cout, Cin, kh, kw], plus bias [Cout]. */
export function conv2d(x: Tensor, weight: Tensor, bias?: Tensor, options: Conv2dOptions = {}): Tensor {
  checkTensor(x, 'x')
  checkTensor(weight, 'weight')
  check4d(x, 'x')
  check4d(weight, 'weight')
  const g = geometry(options)
  const act = checkActivation(options)
  if (bias !== undefined) checkTensor(bias, 'bias')
  const outH = Math.floor((x.shape[2] + 2 * g.padH - weight.shape[2]) / g.strideH) + 1
  const outW = Math.floor((x.shape[3] + 2 * g.padW - weight.shape[3]) / g.strideW) + 1
  if (outH < 1 || outW < 1) throw rangeError(`conv2d: kernel [${weight.shape.slice(2).join(', ')}] is larger than the padded input [${x.shape.slice(2).join(', ')}]`)
  const y = x.device.empty([x.shape[0], weight.shape[0], outH, outW])
  ops().conv2d(x.handle, weight.handle, y.handle, g)
  record(y, [x, weight], 'conv2d', (gy) => {
    let gx: Tensor | undefined
    let gw: Tensor | undefined
    if (x.requiresGrad) {
      gx = x.device.empty(x.shape)
      ops().conv2dBackwardData(gx.handle, weight.handle, gy.handle, g)
    }
    if (weight.requiresGrad) {
      gw = weight.device.empty(weight.shape)
      ops().conv2dBackwardFilter(x.handle, gw.handle, gy.handle, g)
    }
    return [gx, gw]
  })
  return finish(y, bias, act)
}

/**
 * Transposed convolution of x [N, Cin, H, W] with weight [Cin, Cout, kh, kw] (PyTorch's layout), plus bias
 * [Cout]: the output is [N, Cout, (H - 1) * stride - 2 * padding + kh + outputPadding, ...].
 */
export function convTranspose2d(x: Tensor, weight: Tensor, bias?: Tensor, options: Conv2dOptions & { outputPadding?: number | readonly [number, number] } = {}): Tensor {
  checkTensor(x, 'x')
  checkTensor(weight, 'weight')
  check4d(x, 'x')
  check4d(weight, 'weight')
  if (weight.shape[0] !== x.shape[1]) throw rangeError(`convTranspose2d: weight [${weight.shape.join(', ')}] expects ${weight.shape[0]} input channels, x has ${x.shape[1]}`)
  const g = geometry(options)
  const act = checkActivation(options)
  if (bias !== undefined) checkTensor(bias, 'bias')
  const [opH, opW] = pair(options.outputPadding, 0, 'outputPadding')
  if (opH >= g.strideH || opW >= g.strideW) throw rangeError('expected outputPadding < stride')
  const outH = (x.shape[2] - 1) * g.strideH - 2 * g.padH + weight.shape[2] + opH
  const outW = (x.shape[3] - 1) * g.strideW - 2 * g.padW + weight.shape[3] + opW
  if (outH < 1 || outW < 1) throw rangeError('convTranspose2d: the output would be empty')
  // The transposed convolution is the data gradient of the convolution output [N, Cout, outH, outW] -> x.
  const y = x.device.empty([x.shape[0], weight.shape[1], outH, outW])
  ops().conv2dBackwardData(y.handle, weight.handle, x.handle, g)
  record(y, [x, weight], 'convTranspose2d', (gy) => {
    let gx: Tensor | undefined
    let gw: Tensor | undefined
    if (x.requiresGrad) {
      gx = x.device.empty(x.shape)
      ops().conv2d(gy.handle, weight.handle, gx.handle, g)
    }
    if (weight.requiresGrad) {
      gw = weight.device.empty(weight.shape)
      ops().conv2dBackwardFilter(gy.handle, gw.handle, x.handle, g)
    }
    return [gx, gw]
  })
  return finish(y, bias, act)
}

export interface BatchNormState {
  runningMean: Tensor
  runningVar: Tensor
}

/**
 * Batch normalization of x [N, C, ...] per channel (PyTorch's semantics). Training uses the batch statistics
 * and updates `state` with `momentum`; eval uses `state` and records no gradient (use it to sample, not to
 * train through).
 */
export function batchNorm(x: Tensor, gamma: Tensor, beta: Tensor, state: BatchNormState, options: { training: boolean; momentum?: number; eps?: number }): Tensor {
  checkTensor(x, 'x')
  checkTensor(gamma, 'gamma')
  checkTensor(beta, 'beta')
  if (typeof state !== 'object' || state === null) throw typeError(`expected state to be { runningMean, runningVar }, got ${describe(state)}`)
  checkTensor(state.runningMean, 'state.runningMean')
  checkTensor(state.runningVar, 'state.runningVar')
  if (typeof options !== 'object' || options === null) throw typeError(`expected options to be { training, momentum?, eps? }, got ${describe(options)}`)
  checkBoolean(options.training, 'options.training')
  if (x.shape.length < 2) throw rangeError(`batchNorm: expected x to be [N, C, ...], got [${x.shape.join(', ')}]`)
  const channels = x.shape[1]
  const momentum = checkNumber(options.momentum ?? 0.1, 'momentum')
  const eps = checkNumber(options.eps ?? 1e-5, 'eps')
  const y = x.device.empty(x.shape)
  if (!options.training) {
    native().ops.batchNorm(x.handle, y.handle, gamma.handle, beta.handle, state.runningMean.handle, state.runningVar.handle, null, null, {
      training: false,
      momentum,
      eps,
    })
    return y
  }
  const saveMean = x.device.empty([channels])
  const saveInvStd = x.device.empty([channels])
  native().ops.batchNorm(x.handle, y.handle, gamma.handle, beta.handle, state.runningMean.handle, state.runningVar.handle, saveMean.handle, saveInvStd.handle, {
    training: true,
    momentum,
    eps,
  })
  record(y, [x, gamma, beta], 'batchNorm', (gy) => {
    const gx = x.device.empty(x.shape)
    const gg = gamma.device.empty(gamma.shape)
    const gb = beta.device.empty(beta.shape)
    ops().batchNormBackward(x.handle, gy.handle, gamma.handle, saveMean.handle, saveInvStd.handle, gx.handle, gg.handle, gb.handle)
    return [x.requiresGrad ? gx : (gx.dispose(), undefined), gamma.requiresGrad ? gg : (gg.dispose(), undefined), beta.requiresGrad ? gb : (gb.dispose(), undefined)]
  })
  if (!y.requiresGrad) {
    saveMean.dispose()
    saveInvStd.dispose()
  }
  return y
}
