"""imet_utils: the package that build_kernel.py inlines into the iMet 2019 Kaggle kernels."""
