"""Groups of methods that fail alike, named once for the rows of the support matrix."""

#: Opacus' hook-based paths: grad samples (hooks, functorch fallback), DPOptimizer over them,
#: and ghost clipping share the wrapping, the validation and the fallbacks, so they fail alike.
OPACUS = ("opacus-hooks", "opacus-functorch", "opacus-ghost", "opacus-dpoptimizer")
EXPANDED_WEIGHTS = ("opacus-ew", "expanded-weights")
VMAP_FAMILY = ("vmap", "vmap-chunked", "vmap-compiled", "functorch")
