"""State dicts in the official VanillaNet checkpoint layout (DESIGN.md),
written by the tests: official weights cannot be downloaded here."""
import torch


def _bn(prefix, n):
    return {f'{prefix}.weight': torch.rand(n) + .5,
            f'{prefix}.bias': torch.randn(n),
            f'{prefix}.running_mean': torch.randn(n),
            f'{prefix}.running_var': torch.rand(n) + .5,
            f'{prefix}.num_batches_tracked': torch.tensor(100)}


def _conv(prefix, cout, cin, k=1):
    return {f'{prefix}.weight': torch.randn(cout, cin, k, k),
            f'{prefix}.bias': torch.randn(cout)}


def official_state_dict(arch, act_num, num_classes=1000, deploy=False):
    """Keys written from the official code's layout (see DESIGN.md)."""
    dims, k = arch['dims'], 2 * act_num + 1
    sd = {}
    if deploy:
        sd.update(_conv('stem.0', dims[0], 3, 4))
        sd.update({'stem.1.weight': torch.randn(dims[0], 1, k, k),
                   'stem.1.bias': torch.randn(dims[0])})
        for i in range(len(arch['strides'])):
            sd.update(_conv(f'stages.{i}.conv', dims[i + 1], dims[i]))
            sd.update({f'stages.{i}.act.weight':
                       torch.randn(dims[i + 1], 1, k, k),
                       f'stages.{i}.act.bias': torch.randn(dims[i + 1])})
        sd.update(_conv('cls.2', num_classes, dims[-1]))
        return sd
    sd.update(_conv('stem1.0', dims[0], 3, 4))
    sd.update(_bn('stem1.1', dims[0]))
    sd.update(_conv('stem2.0', dims[0], dims[0]))
    sd.update(_bn('stem2.1', dims[0]))
    sd['stem2.2.weight'] = torch.randn(dims[0], 1, k, k)
    sd.update(_bn('stem2.2.bn', dims[0]))
    for i in range(len(arch['strides'])):
        p = f'stages.{i}'
        sd.update(_conv(f'{p}.conv1.0', dims[i], dims[i]))
        sd.update(_bn(f'{p}.conv1.1', dims[i]))
        sd.update(_conv(f'{p}.conv2.0', dims[i + 1], dims[i]))
        sd.update(_bn(f'{p}.conv2.1', dims[i + 1]))
        sd[f'{p}.act.weight'] = torch.randn(dims[i + 1], 1, k, k)
        sd.update(_bn(f'{p}.act.bn', dims[i + 1]))
    sd.update(_conv('cls1.2', num_classes, dims[-1]))
    sd.update(_bn('cls1.3', num_classes))
    sd.update(_conv('cls2.0', num_classes, num_classes))
    return sd
