// GAN and regression losses, composed from differentiable ops.
import { add, hingeSum, mean, mul, scaledSum, sub } from '../nn/functional.js'
import { checkTensor, type Tensor } from '../tensor.js'

/** Discriminator hinge loss: mean(relu(1 - D(real))) + mean(relu(1 + D(fake))). */
export function hingeLossD(realScores: Tensor, fakeScores: Tensor): Tensor {
  checkTensor(realScores, 'realScores')
  checkTensor(fakeScores, 'fakeScores')
  const real = hingeSum(realScores, -1, 1 / Math.max(realScores.size, 1))
  const fake = hingeSum(fakeScores, 1, 1 / Math.max(fakeScores.size, 1))
  const loss = add(real, fake)
  if (!loss.requiresGrad) [real, fake].forEach((t) => t.dispose())
  return loss
}

/** Generator hinge loss: -mean(D(fake)). */
export function hingeLossG(fakeScores: Tensor): Tensor {
  checkTensor(fakeScores, 'fakeScores')
  return scaledSum(fakeScores, -1 / Math.max(fakeScores.size, 1))
}

/** Mean squared error. */
export function mseLoss(prediction: Tensor, target: Tensor): Tensor {
  const d = sub(prediction, target)
  return mean(mul(d, d))
}
