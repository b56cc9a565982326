// Weight shapes of the discriminators the demo and benchmarks normalize (PyTorch layout [out, in, kh, kw]).

export interface Workload {
  name: string
  shapes: number[][]
}

export const snganCnnD: Workload = {
  name: 'SNGAN CNN D (CIFAR)',
  shapes: [[64, 3, 3, 3], [64, 64, 4, 4], [128, 64, 3, 3], [128, 128, 4, 4], [256, 128, 3, 3], [256, 256, 4, 4], [512, 256, 3, 3], [1, 8192]],
}

export const mlp2dD: Workload = {
  name: 'MLP-2D D',
  shapes: [[512, 2], [512, 512], [512, 512], [1, 512]],
}

export const snganResnetD: Workload = {
  name: 'SNGAN ResNet D (ch 128)',
  shapes: [
    [128, 3, 3, 3], [128, 128, 3, 3], [128, 3, 1, 1], [128, 128, 3, 3], [128, 128, 3, 3], [128, 128, 1, 1],
    [128, 128, 3, 3], [128, 128, 3, 3], [128, 128, 3, 3], [128, 128, 3, 3], [1, 128],
  ],
}

function bigganD(): Workload {
  const channels: Array<[number, number]> = [[3, 96], [96, 192], [192, 384], [384, 768], [768, 1536], [1536, 1536]]
  const shapes: number[][] = []
  channels.forEach(([cin, cout], block) => {
    shapes.push([cout, cin, 3, 3], [cout, cout, 3, 3])
    if (block < 5) shapes.push([cout, cin, 1, 1])
    if (block === 1) shapes.push([24, 192, 1, 1], [24, 192, 1, 1], [96, 192, 1, 1], [192, 96, 1, 1])
  })
  shapes.push([1, 1536], [1000, 1536])
  return { name: 'BigGAN-128 D (ch 96)', shapes }
}

export const bigganDeep: Workload = bigganD()

export const workloads: readonly Workload[] = [mlp2dD, snganCnnD, snganResnetD, bigganDeep]

export function parameterCount(w: Workload): number {
  return w.shapes.reduce((sum, s) => sum + s.reduce((a, b) => a * b, 1), 0)
}
