// The attn command-line tool (being written).
#include <cstdio>
int main() { std::puts("attn " ATTN_VERSION); return 0; }
