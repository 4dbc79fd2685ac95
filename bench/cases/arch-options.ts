// Bench case "arch-options": ULR's options at K = 32 on the small CNN, the residual CNN and the GRU of the
// architectures case (the same models, data, Adam 1e-3, batch 64, 5 epochs, seed 1, sigma 0.1, trained by its
// measure()): plain (noise in every layer), layer-wise, QMC with the clean baseline, per-channel sigma from the data
// (channel-sigma.ts), layer-wise with copies: 'auto', and the copies' products in bfloat16. Prints one JSON line: the
// runs (an option a model refuses records the error), the per-channel sigmas' range per layer, and the 1-minute load
// average before and after each run.
import * as os from 'os';
import * as of from '../../lib/index';
import { MODELS, measure, Run } from './architectures';
import { channelSigma } from './channel-sigma';

const K = 32,
  SIGMA = 0.1;
const MODEL_NAMES = ['small CNN (', 'residual CNN', 'GRU 64'];

async function main() {
  const digits = of.datasets.digits();
  const runs: (Run & { load: [number, number] })[] = [];
  const sigmaRanges: { model: string; layers: [number, number][] }[] = [];
  for (const prefix of MODEL_NAMES) {
    const spec = MODELS.find((s) => s.name.startsWith(prefix))!;
    const init = spec.build(); // the seed-1 weights every run starts from
    const perChannel = await channelSigma(init, digits.train, 64, SIGMA);
    init.dispose();
    sigmaRanges.push({ model: spec.name, layers: perChannel.map((v) => [Math.min(...v), Math.max(...v)]) });
    const options: [string, of.UlrOptions][] = [
      [`ulr K=${K} (plain: injection 'all')`, { copies: K }],
      [`ulr K=${K}, layerwise (K per layer)`, { copies: K, injection: 'layerwise' }],
      [`ulr K=${K}, qmc, baseline clean`, { copies: K, qmc: true, baseline: 'clean' }],
      [`ulr K=${K}, per-channel sigma ∝ clean pre-activation std`, { copies: K, sigma: perChannel }],
      [`ulr layerwise, copies 'auto' (budget ${K})`, { copies: 'auto', budget: K, injection: 'layerwise' }],
      [`ulr K=${K}, bf16 copies`, { copies: K, precision: 'bf16' }],
    ];
    for (const [name, o] of options) {
      const load = os.loadavg()[0]!;
      let run: Run;
      try {
        run = await measure(spec, name, of.ulr(o), digits);
      } catch (err) {
        // ulr() itself refusing the options
        const e = err as of.OneForwardError;
        run = { model: spec.name, estimator: name, refused: `${e.code}: ${e.message}` };
      }
      runs.push({ ...run, load: [load, os.loadavg()[0]!] });
    }
  }
  process.stdout.write(JSON.stringify({ copies: K, sigma: SIGMA, runs, sigmaRanges }) + '\n');
}

main().catch((err) => {
  process.stderr.write(String(err?.stack ?? err) + '\n');
  process.exit(1);
});
