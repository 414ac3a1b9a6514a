#include "af/cli/cli.h"

int main(int argc, char** argv) { return af::cli::Main(argc, argv); }
