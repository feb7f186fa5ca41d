"""Where results live: atomic files, the target cache and its verification, run directories, the process group."""
