"""Each kernel path of the token mixer against a slow, obviously-correct reference."""

import pytest
import timm
import torch
import torch.nn.functional as F

from searchspace import build_model
from searchspace.kernels import sliding_aggregate, sliding_logits
from searchspace.mixer import TokenMixer
from searchspace.spec import MixerSpec


def unfold_neighbours(x, kernel):
    """(B, C, H, W) -> (B, C, K*K, H, W), zero padded: the naive path our kernels avoid."""
    b, c, h, w = x.shape
    return F.unfold(x, kernel, padding=kernel // 2).view(b, c, kernel * kernel, h, w)


@pytest.mark.parametrize("groups", [1, 3, 6])
def test_sliding_kernels_match_unfold_and_have_correct_gradients(groups):
    b, c, h, w, k = 2, 6, 5, 4, 3
    v = torch.randn(b, c, h, w, dtype=torch.double, requires_grad=True)
    wts = torch.randn(b, groups, k * k, h, w, dtype=torch.double, requires_grad=True)
    ref = (unfold_neighbours(v, k).view(b, groups, c // groups, k * k, h, w) * wts.unsqueeze(2)).sum(3).view(b, c, h, w)
    torch.testing.assert_close(sliding_aggregate(v, wts, k), ref)
    assert torch.autograd.gradcheck(lambda a, bb: sliding_aggregate(a, bb, k), (v, wts))
    q = torch.randn(b, c, h, w, dtype=torch.double, requires_grad=True)
    ref = (unfold_neighbours(v, k).view(b, groups, c // groups, k * k, h, w) * q.view(b, groups, c // groups, 1, h, w)).sum(2)
    torch.testing.assert_close(sliding_logits(q, v, k, groups), ref)
    assert torch.autograd.gradcheck(lambda a, bb: sliding_logits(a, bb, k, groups), (q, v))


def test_swin_t_computes_what_timm_swin_computes_with_the_same_weights():
    ours = build_model("swin_t").eval()
    theirs = timm.create_model("swin_tiny_patch4_window7_224", pretrained=False).eval()
    rename = [
        ("patch_embed.proj", "stem.convs"), ("patch_embed.norm", "stem.norm"), (".attn.relative_position_bias_table", ".mixer.rel_table"),
        (".attn.", ".mixer."), (".mlp.", ".ffn."), ("layers.", "stages."), ("norm.", "head.norm."),
    ]
    state = {}
    for key, value in theirs.state_dict().items():
        if ".downsample." in key:
            stage = int(key.split(".")[1])
            key = f"downsamples.{stage - 1}.{key.split('.downsample.')[1]}"
        elif not key.startswith("head.norm"):
            for old, new in rename:
                if key.startswith("norm.") and old != "norm.":
                    continue
                key = key.replace(old, new) if old != "norm." or key.startswith("norm.") else key
        state[key] = value
    missing = ours.load_state_dict(state, strict=False)
    assert not missing.unexpected_keys and all("rel_index" in k for k in missing.missing_keys)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), atol=1e-4, rtol=1e-4)


def reference_local_attention(mixer, x, neighbours):
    """Per-pixel softmax(q.k + bias) v over `neighbours(y, x) -> [(ky, kx, bias_per_head)]`, then W_out."""
    b, h, w, c = x.shape
    g, hd = mixer.heads, mixer.head_dim
    q, k, v = mixer.qkv(x).split(c, -1)
    q, k, v = (t.view(b, h, w, g, hd) for t in (q, k, v))
    out = torch.zeros(b, h, w, g, hd, dtype=x.dtype)
    for y in range(h):
        for xx in range(w):
            keys = neighbours(y, xx, q[:, y, xx])
            logits = torch.stack([(q[:, y, xx] * k[:, ky, kx]).sum(-1) * hd**-0.5 + bias for ky, kx, bias in keys], -1)
            attn = logits.softmax(-1)
            out[:, y, xx] = sum(attn[..., i, None] * v[:, ky, kx] for i, (ky, kx, _) in enumerate(keys))
    return mixer.proj(out.view(b, h, w, c))


@pytest.mark.parametrize("rel_pos", [True, False])
def test_halo_attention_matches_a_per_pixel_reference_with_masked_padding_and_relative_logits(rel_pos):
    spec = MixerSpec(connectivity="halo", dynamic="attention", kernel=3, halo=1, heads=2, rel_pos=rel_pos)
    h, w = 7, 5  # not multiples of the block: padded pixels must be masked out
    mixer = TokenMixer(spec, 8, (h, w)).double()
    x = torch.randn(2, h, w, 8, dtype=torch.double)
    k, halo, span = 3, 1, 5

    def neighbours(y, xx, q):
        by, bx = y // k * k, xx // k * k
        keys = []
        for ky in range(by - halo, by + k + halo):
            for kx in range(bx - halo, bx + k + halo):
                if 0 <= ky < h and 0 <= kx < w:
                    if not rel_pos:
                        keys.append((ky, kx, 0.0))
                        continue
                    rel_h = mixer.rel_height[ky - y + span - 1]  # tables indexed by offset, centred at span - 1
                    rel_w = mixer.rel_width[kx - xx + span - 1]
                    bias = (q * (rel_h + rel_w)).sum(-1)
                    keys.append((ky, kx, bias))
        return keys

    with torch.no_grad():
        torch.testing.assert_close(mixer(x), reference_local_attention(mixer, x, neighbours))


@pytest.mark.parametrize("h, w", [(2, 3), (3, 3), (5, 6)])  # maps within one neighbourhood (fused attention) and larger
def test_sliding_attention_matches_a_per_pixel_reference_over_the_neighbourhood_inside_the_map(h, w):
    spec = MixerSpec(connectivity="sliding", dynamic="attention", kernel=3, heads=2)
    mixer = TokenMixer(spec, 8, (h, w)).double()
    x = torch.randn(2, h, w, 8, dtype=torch.double)

    def neighbours(y, xx, q):
        return [
            (y + dy, xx + dx, mixer.rel_table[:, (dy + 1) * 3 + dx + 1])
            for dy in (-1, 0, 1)
            for dx in (-1, 0, 1)
            if 0 <= y + dy < h and 0 <= xx + dx < w
        ]

    with torch.no_grad():
        torch.testing.assert_close(mixer(x), reference_local_attention(mixer, x, neighbours))


def test_deformable_sampling_with_zero_offsets_is_a_softmax_weighted_neighbourhood_and_offsets_move_it():
    spec = MixerSpec(connectivity="deformable", dynamic="inhomogeneous", kernel=3, heads=2, weight_norm="softmax")
    mixer = TokenMixer(spec, 8, (6, 6)).double()
    x = torch.randn(2, 6, 6, 8, dtype=torch.double)
    with torch.no_grad():
        v = mixer.value(x).permute(0, 3, 1, 2)
        context = F.gelu(mixer.context_norm(mixer.context(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)))
        weights = mixer.point_weight(context).view(2, 6, 6, 2, 9).softmax(-1).permute(0, 3, 4, 1, 2)
        expected = (unfold_neighbours(v, 3).view(2, 2, 4, 9, 6, 6) * weights.unsqueeze(2)).sum(3).view(2, 8, 6, 6)
        torch.testing.assert_close(mixer.mix(x), expected.permute(0, 2, 3, 1))
        # an offset of exactly one pixel to the right samples the neighbourhood of the pixel to the right
        mixer.offset.bias.copy_(torch.tensor([1.0, 0.0]).repeat(2 * 9))
        moved = unfold_neighbours(F.pad(v, (0, 1)), 3)[..., 1:]  # neighbourhoods of x + 1, zero outside
        expected = (moved.reshape(2, 2, 4, 9, 6, 6) * weights.unsqueeze(2)).sum(3).view(2, 8, 6, 6)
        torch.testing.assert_close(mixer.mix(x), expected.permute(0, 2, 3, 1))


def test_deformable_offsets_start_at_zero_inside_a_built_network():
    offsets = [m.offset for m in build_model("u_internimage_micro").modules() if hasattr(m, "offset")]
    assert offsets and all(o.weight.abs().sum() == 0 and o.bias.abs().sum() == 0 for o in offsets)


@pytest.mark.parametrize("batch, size", [(3, 5), (3, 64), (1, 5)])  # the batch folded into channels; a conv per sample
def test_homogeneous_dynamic_conv_gives_each_sample_its_own_kernel(batch, size):
    spec = MixerSpec(connectivity="sliding", dynamic="homogeneous", kernel=3, heads=4)
    mixer = TokenMixer(spec, 8, (size, size)).double().eval()
    x = torch.randn(batch, size, size, 8, dtype=torch.double)
    with torch.no_grad():
        v = mixer.value(x)
        out = mixer.mix(x)
        for i in range(batch):
            kernel = mixer.generator(v[i : i + 1].mean((1, 2))).view(4, 1, 3, 3).repeat_interleave(2, 0)
            ref = F.conv2d(v[i : i + 1].permute(0, 3, 1, 2), kernel, mixer.static_bias, padding=1, groups=8)
            torch.testing.assert_close(out[i : i + 1], ref.permute(0, 2, 3, 1))


def test_static_window_weights_act_per_window_when_not_shared_across_positions():
    spec = MixerSpec(connectivity="window", dynamic="static", kernel=2, heads=1, shared_positions=False)
    mixer = TokenMixer(spec, 4, (4, 4), out_dim=None).double()
    assert mixer.static_weight.shape == (4, 1, 4, 4)  # one 4x4 matrix for each of the 2x2 windows
    x = torch.randn(1, 4, 4, 4, dtype=torch.double)
    with torch.no_grad():
        v = mixer.value(x)
        out = mixer(x)
        window = v[0, 2:4, 0:2].reshape(4, 4)  # the bottom-left window is the third
        torch.testing.assert_close(out[0, 2:4, 0:2].reshape(4, 4), mixer.static_weight[2, 0] @ window)


class _Ones(torch.nn.Module):
    """Values of 1 everywhere: the mixer's output is then the sum of each pixel's weights."""

    def forward(self, x):
        return torch.ones_like(x)


@pytest.mark.parametrize("weight_norm, total", [("softmax", 1.0), ("filter_norm", 0.0)])
def test_shifted_window_filters_are_normalised_over_their_own_region_only(weight_norm, total):
    # A shifted window straddles the map's edge: its pixels come from different regions and must not mix.
    # Each filter is normalised over the members it keeps (softmax sums to 1, filter-norm to zero mean).
    spec = MixerSpec(connectivity="window", dynamic="inhomogeneous", kernel=4, heads=2, shift=True, weight_norm=weight_norm)
    mixer = TokenMixer(spec, 8, (8, 8), shifted=True, out_dim=None).double().eval()
    assert mixer.shift == 2
    mixer.value = _Ones()
    with torch.no_grad():
        out = mixer.mix(torch.randn(2, 8, 8, 8, dtype=torch.double))
    torch.testing.assert_close(out, torch.full_like(out, total))
