#include <cstdio>
int main() { std::puts("agent-factory"); return 0; }
