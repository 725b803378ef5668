"""Build VanillaNet, fuse a copy, check the fused output, time both forms.

    python tools/analysis_tools/check_fusion.py [--arch vanillanet_13]
        [--act-num 4] [--shape 320 480] [--iters 5]
"""
import argparse

import torch

from vanillanet_mm.analysis import compare_forms
from vanillanet_mm.models import VanillaNet
from vanillanet_mm.utils.numerics import randomize_bn

FUSION_TOL = 1e-5  # max relative error of the fused backbone


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument('--arch', default='vanillanet_13')
    p.add_argument('--act-num', type=int, default=4)
    p.add_argument('--shape', type=int, nargs=2, default=(320, 480))
    p.add_argument('--iters', type=int, default=5)
    p.add_argument('--warmup', type=int, default=2)
    args = p.parse_args()
    torch.manual_seed(0)
    model = VanillaNet(args.arch, act_num=args.act_num,
                       out_indices=VanillaNet.multiscale_out_indices(
                           args.arch)).eval()
    randomize_bn(model)
    model.set_act_learn(1.0)
    res = compare_forms(model, args.shape, args.iters, args.warmup,
                        tol=FUSION_TOL)
    err = res['rel_err']
    print(f'{args.arch} act_num={args.act_num} input 1x3x{args.shape[0]}x'
          f'{args.shape[1]}: fused vs training form max rel. error {err:.2e}')
    if err > FUSION_TOL:
        raise SystemExit(f'FAILED: fusion error {err:.2e} > {FUSION_TOL:g}')
    t_train, t_fused = res['train_ms'], res['fused_ms']
    print(f"{'form':<16}{'median ms':>10}{'p90 ms':>10}")
    for name, t in (('training (λ=1)', t_train), ('fused', t_fused)):
        print(f"{name:<16}{t['median_ms']:>10.1f}{t['p90_ms']:>10.1f}")
    print(f"fused speed-up: {t_train['median_ms'] / t_fused['median_ms']:.2f}x"
          f' ({torch.get_num_threads()} threads, median of {args.iters})')


if __name__ == '__main__':
    main()
