// GAN and regression losses, composed from differentiable ops.
import { add, addScalar, mean, mul, neg, relu, sub } from '../nn/functional.js'
import type { Tensor } from '../tensor.js'

/** Discriminator hinge loss: mean(relu(1 - D(real))) + mean(relu(1 + D(fake))). */
export function hingeLossD(realScores: Tensor, fakeScores: Tensor): Tensor {
  return add(mean(relu(addScalar(neg(realScores), 1))), mean(relu(addScalar(fakeScores, 1))))
}

/** Generator hinge loss: -mean(D(fake)). */
export function hingeLossG(fakeScores: Tensor): Tensor {
  return neg(mean(fakeScores))
}

/** Mean squared error. */
export function mseLoss(prediction: Tensor, target: Tensor): Tensor {
  const d = sub(prediction, target)
  return mean(mul(d, d))
}
