// GAN and regression losses, composed from differentiable ops.
import { add, hinge, mean, mul, scaledSum, sub } from '../nn/functional.js'
import { checkTensor, type Tensor } from '../tensor.js'

/** Discriminator hinge loss: mean(relu(1 - D(real))) + mean(relu(1 + D(fake))). */
export function hingeLossD(realScores: Tensor, fakeScores: Tensor): Tensor {
  checkTensor(realScores, 'realScores')
  checkTensor(fakeScores, 'fakeScores')
  const real = hinge(realScores, realScores.size, 1 / Math.max(realScores.size, 1), 0)
  const fake = hinge(fakeScores, 0, 0, 1 / Math.max(fakeScores.size, 1))
  const loss = add(real, fake)
  if (!loss.requiresGrad) [real, fake].forEach((t) => t.dispose())
  return loss
}

/**
 * The discriminator hinge loss of one D pass over real and fake samples concatenated: `scores`' first `realCount`
 * elements are D(real), the rest D(fake). The same value as hingeLossD on the two parts.
 */
export function hingeLossDJoint(scores: Tensor, realCount: number): Tensor {
  checkTensor(scores, 'scores')
  return hinge(scores, realCount, 1 / Math.max(realCount, 1), 1 / Math.max(scores.size - realCount, 1))
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
