"""Writes the feature spec (docs/feature-spec.md) that reproduces the original project's fitted
scikit-learn preprocessing, column for column, so that `fraudctl transform` can feed its
SageMaker endpoint.

    python -m model.export_preprocess --artifact /work/shared/seed/preprocess.joblib \
        --out model/original/feature_spec.json
"""

import argparse
import json
import sys
from pathlib import Path
from unittest import mock

import joblib
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction import FeatureHasher
from sklearn.preprocessing import OneHotEncoder

from model import encoders, features

SPEC_NAME = "original-sagemaker-v1"
PICKLED_MODULE = "encoders"  # the module the original project pickled HashingEncoder from


class Unsupported(Exception):
    """The artifact holds something the feature spec cannot express."""


def load_preprocess(path):
    """Loads the pickled ColumnTransformer (needs scikit-learn 1.3.2). The artifact names its
    transformer's class `encoders.HashingEncoder`: for the load, that module is model.encoders
    (the one place that name stands for it)."""
    with mock.patch.dict(sys.modules, {PICKLED_MODULE: encoders}):
        return joblib.load(path)


def one_hot_blocks(encoder, cols):
    if encoder.handle_unknown != "ignore" or encoder.drop is not None:
        raise Unsupported("OneHotEncoder must have handle_unknown='ignore' and drop=None")
    if getattr(encoder, "_infrequent_enabled", False):
        raise Unsupported("OneHotEncoder with infrequent categories is not supported")
    return [
        {"type": "one_hot", "field": col, "categories": [str(c) for c in cats]}
        for col, cats in zip(cols, encoder.categories_)
    ]


def hashing_block(encoder, cols):
    hasher = encoder.hasher
    if not isinstance(hasher, FeatureHasher) or hasher.input_type != "string":
        raise Unsupported("HashingEncoder.hasher must be a FeatureHasher(input_type='string')")
    if encoder.n_features != hasher.n_features:
        raise Unsupported(
            f"HashingEncoder.n_features {encoder.n_features} differs from its hasher's {hasher.n_features}"
        )
    return {
        "type": "hashing",
        "fields": list(cols),
        "n_features": hasher.n_features,
        "alternate_sign": bool(hasher.alternate_sign),
    }


def spec_of(preprocess):
    """The feature spec equivalent to a fitted ColumnTransformer; raises Unsupported otherwise."""
    if not isinstance(preprocess, ColumnTransformer):
        raise Unsupported(f"expected a fitted ColumnTransformer, found {type(preprocess).__name__}")
    if preprocess.transformer_weights:
        raise Unsupported("transformer_weights are not supported")
    blocks, width = [], 0
    for name, transformer, cols in preprocess.transformers_:
        if isinstance(transformer, str) and transformer == "drop":
            continue
        out = preprocess.output_indices_[name]
        if out.start != width:
            raise Unsupported(f"transformer {name!r} output starts at column {out.start}, expected {width}")
        if isinstance(transformer, OneHotEncoder):
            new = one_hot_blocks(transformer, cols)
        elif isinstance(transformer, encoders.HashingEncoder):
            new = [hashing_block(transformer, cols)]
        elif isinstance(transformer, str) and transformer == "passthrough":
            new = [{"type": "numeric", "features": list(cols)}]
        else:
            raise Unsupported(
                f"transformer {name!r} ({type(transformer).__name__}) has no feature-spec equivalent"
            )
        for block in new:
            try:
                features.check_spec(
                    {
                        "schema": features.SPEC_SCHEMA,
                        "version": 1,
                        "name": "",
                        "time_zone": "UTC",
                        "blocks": [block],
                    }
                )
            except ValueError as e:
                raise Unsupported(f"transformer {name!r} on {list(cols)}: {e}") from None
        blocks += new
        width += len(features.columns({"blocks": new}))
        if out.stop != width:
            raise Unsupported(
                f"transformer {name!r} outputs columns {out.start}..{out.stop}, "
                f"the spec gives {out.start}..{width}"
            )
    return {
        "schema": features.SPEC_SCHEMA,
        "version": 1,
        "name": SPEC_NAME,
        "time_zone": "UTC",
        "blocks": blocks,
    }


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--artifact", required=True, type=Path, help="fitted preprocessing (joblib) of the original project"
    )
    parser.add_argument("--out", required=True, type=Path, help="feature spec file to write")
    args = parser.parse_args()
    if not args.artifact.is_file():
        sys.exit(f"export_preprocess: --artifact {args.artifact} does not exist")
    try:
        spec = spec_of(load_preprocess(args.artifact))
    except Unsupported as e:
        sys.exit(f"export_preprocess: {args.artifact}: {e}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(spec, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}: {len(features.columns(spec))} columns in {len(spec['blocks'])} blocks")


if __name__ == "__main__":
    main()
