//! Device-tree (FDT) patching at run time.
