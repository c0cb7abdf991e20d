"""Image-folder datasets (image_folder, isbi2012_em, dsb2018_nuclei): 2D or 3D image files
and their masks, paired by file stem."""
