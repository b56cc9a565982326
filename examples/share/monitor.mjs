// The monitor started by trainer.mjs: opens the trainer's discriminator weights (the same memory, on the same
// device) and reports their sigmas when asked. Its BSSN state (u, v) lives here, not in the trainer.
import { BSSN, Tensor } from 'bssn'

let weights, bssn
process.on('message', async (message) => {
  if (message.weights) {
    weights = message.weights.map((descriptor) => Tensor.open(descriptor))
    bssn = new BSSN(weights, { mode: 'bssn' })
  } else if (message.step) {
    bssn.forward() // one power iteration on the trainer's current weights
    const sigmas = await bssn.sigmas()
    process.send(`step ${message.step}: ` + sigmas.map((s, i) => `W${i} ${s.sigma1.toFixed(3)}/${s.sigma2.toFixed(3)}`).join(' '))
  } else if (message.done) {
    bssn.dispose()
    for (const w of weights) w.dispose()
    process.disconnect()
  }
})
