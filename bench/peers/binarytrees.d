/*
 * binary-trees peer in D (benchmarks game rules), allocated by druntime's GC.
 * Run with the default collector, or with `--DRT-gcopt=fork:1` (druntime's
 * fork()ed concurrent marking, Linux), plus `profile:1` for GC statistics.
 * Prints the check lines, then `@@PEER {json}` with GC.profileStats and maxrss.
 *   ldc2 -O3 -release binarytrees.d -of=binarytrees_d
 *   ./binarytrees_d 21 "--DRT-gcopt=fork:1 profile:1"
 */
import core.memory : GC;
import core.stdc.stdio : printf, fflush, stdout;
import core.stdc.stdlib : atoi;
import core.sys.posix.sys.resource : getrusage, rusage, RUSAGE_SELF;
import core.time : MonoTime;

final class Node
{
    Node left, right;
    this(Node l, Node r) { left = l; right = r; }
}

Node bottomUp(int d)
{
    return d > 0 ? new Node(bottomUp(d - 1), bottomUp(d - 1)) : new Node(null, null);
}

int check(Node t)
{
    return t.left is null ? 1 : 1 + check(t.left) + check(t.right);
}

void main(string[] args)
{
    immutable int n = args.length > 1 ? atoi(args[1].ptr) : 10;
    enum minDepth = 4;
    immutable int maxDepth = n > minDepth + 2 ? n : minDepth + 2;
    immutable start = MonoTime.currTime;

    immutable int stretch = maxDepth + 1;
    printf("stretch tree of depth %d\t check: %d\n", stretch, check(bottomUp(stretch)));
    auto longLived = bottomUp(maxDepth);
    for (int d = minDepth; d <= maxDepth; d += 2)
    {
        immutable int iterations = 1 << (maxDepth - d + minDepth);
        long sum = 0;
        foreach (i; 0 .. iterations)
            sum += check(bottomUp(d));
        printf("%d\t trees of depth %d\t check: %lld\n", iterations, d, sum);
    }
    printf("long lived tree of depth %d\t check: %d\n", maxDepth, check(longLived));

    immutable wallMs = (MonoTime.currTime - start).total!"usecs" / 1000.0;
    auto ps = GC.profileStats();
    rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("@@PEER {\"wallMs\":%.3f,\"collections\":%lld,\"totalCollectionMs\":%.3f,\"totalPauseMs\":%.3f,"
        ~ "\"maxPauseMs\":%.3f,\"maxCollectionMs\":%.3f,\"maxRssBytes\":%lld}\n",
        wallMs, cast(long) ps.numCollections,
        ps.totalCollectionTime.total!"usecs" / 1000.0, ps.totalPauseTime.total!"usecs" / 1000.0,
        ps.maxPauseTime.total!"usecs" / 1000.0, ps.maxCollectionTime.total!"usecs" / 1000.0,
        cast(long) ru.ru_maxrss * 1024);
    fflush(stdout);
}
