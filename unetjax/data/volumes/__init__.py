"""Medical volumes (the decathlon dataset): MSD / nnU-Net NIfTI folders read in RAS, resampled
to one spacing, normalised (CT / z-score), sampled in patches, predicted back onto their grid."""
