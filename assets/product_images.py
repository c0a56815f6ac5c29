"""Product images: one studio shot per launched product, for the ad copy's variants.

Each image lands as a PNG beside the partition's results
(`product_images/results/partition=<day>/images/<sku>.png`), named in the row's `image_files`
with its size, quality and output image tokens.
"""

from assets.ad_copy import use_case as ad_copy
from batch_pipeline import BatchSpec, UseCase

use_case = UseCase(
    spec=BatchSpec(
        name="product_images",
        description="A studio product shot per launched product, to go with its ad copy.",
        endpoint="/v1/images/generations",
        model="gpt-image-1-mini",
        prompt=(
            "A clean studio photograph of the {product_name}, a {category} product ({features}), "
            "on a plain light background, no text."
        ),
        parameters={"size": "1024x1024", "quality": "low"},
        expected_output_tokens=272,  # a low-quality 1024x1024 image, as OpenAI documents it
        owners=("team:growth",),
    ),
    source=ad_copy.source,
    partitions_def=ad_copy.partitions_def,
)
