/*
 * The NET_BUFFER shared-memory walk in C, written against the WDK's definitions: the same
 * structure layouts (x64/ARM64 offsets, as in nbshm's src/sys/layout.rs) and accessor macros with
 * the WDK's names and bodies (each a plain field read, ndis-reference.md C.11). It does the work
 * nbshm's data path does per NET_BUFFER -- bounded walk, pointer checks, segment/byte/anomaly
 * counting -- into a caller's struct, with none of the per-CPU or per-handle accounting. It is the
 * floor the Rust code is compared with (docs/performance.md).
 */
#include <stddef.h>
#include <stdint.h>

typedef struct _NET_BUFFER_SHARED_MEMORY {
    struct _NET_BUFFER_SHARED_MEMORY *NextSharedMemorySegment;
    uint32_t SharedMemoryFlags;
    void *SharedMemoryHandle;
    uint32_t SharedMemoryOffset;
    uint32_t SharedMemoryLength;
} NET_BUFFER_SHARED_MEMORY, *PNET_BUFFER_SHARED_MEMORY;

typedef struct _NET_BUFFER {
    struct _NET_BUFFER *Next;
    void *CurrentMdl;
    uint32_t CurrentMdlOffset;
    uint32_t Padding0;
    uint32_t DataLength; /* low half of the SIZE_T union */
    uint32_t stDataLengthHigh;
    void *MdlChain;
    uint32_t DataOffset;
    uint32_t Padding1;
    uint16_t ChecksumBias;
    uint16_t Reserved;
    uint32_t Padding2;
    void *NdisPoolHandle;
    void *NdisReserved[2];
    void *ProtocolReserved[6];
    void *MiniportReserved[4];
    int64_t DataPhysicalAddress;
    PNET_BUFFER_SHARED_MEMORY SharedMemoryInfo; /* union with ScatterGatherList */
} NET_BUFFER, *PNET_BUFFER;

typedef struct _NET_BUFFER_LIST {
    struct _NET_BUFFER_LIST *Next;
    PNET_BUFFER FirstNetBuffer;
    /* ... the rest is never read here */
} NET_BUFFER_LIST, *PNET_BUFFER_LIST;

_Static_assert(offsetof(NET_BUFFER, SharedMemoryInfo) == 0xA8, "NET_BUFFER layout");
_Static_assert(offsetof(NET_BUFFER, DataLength) == 0x18, "NET_BUFFER layout");
_Static_assert(offsetof(NET_BUFFER_SHARED_MEMORY, SharedMemoryLength) == 0x1C, "shared memory layout");

#define NET_BUFFER_LIST_NEXT_NBL(_NBL) ((_NBL)->Next)
#define NET_BUFFER_LIST_FIRST_NB(_NBL) ((_NBL)->FirstNetBuffer)
#define NET_BUFFER_NEXT_NB(_NB) ((_NB)->Next)
#define NET_BUFFER_FIRST_SHARED_MEM_INFO(_NB) ((_NB)->SharedMemoryInfo)
#define NET_BUFFER_SHARED_MEM_NEXT_SEGMENT(_SHI) ((_SHI)->NextSharedMemorySegment)
#define NET_BUFFER_SHARED_MEM_FLAGS(_SHI) ((_SHI)->SharedMemoryFlags)
#define NET_BUFFER_SHARED_MEM_HANDLE(_SHI) ((_SHI)->SharedMemoryHandle)
#define NET_BUFFER_SHARED_MEM_OFFSET(_SHI) ((_SHI)->SharedMemoryOffset)
#define NET_BUFFER_SHARED_MEM_LENGTH(_SHI) ((_SHI)->SharedMemoryLength)

enum { OVERLONG = 1, OFFSET_OVERFLOW = 2, NULL_HANDLE = 4, ZERO_LENGTH = 8, BAD_POINTER = 16 };

/* Field order and meaning match nbshm::stats::BatchCounts. */
typedef struct CWALK_COUNTS {
    uint64_t nbls, net_buffers, walked, with_shared_memory, segments, shared_bytes;
    uint32_t max_chain, pad;
    uint64_t anomalies[5];
} CWALK_COUNTS;

uint64_t nbshm_c_walk(PNET_BUFFER_LIST nbls, uint32_t bound, uintptr_t floor, int walk, CWALK_COUNTS *c)
{
    /* Counts are kept in locals and stored once at the end, as a careful C author would. */
    uint64_t n_nbls = 0, n_nbs = 0, n_walked = 0, n_with = 0, n_segs = 0, n_bytes = 0;
    uint32_t max_chain = c->max_chain;
    for (PNET_BUFFER_LIST nbl = nbls; nbl != NULL; nbl = NET_BUFFER_LIST_NEXT_NBL(nbl)) {
        n_nbls++;
        for (PNET_BUFFER nb = NET_BUFFER_LIST_FIRST_NB(nbl); nb != NULL; nb = NET_BUFFER_NEXT_NB(nb)) {
            n_nbs++;
            if (!walk)
                continue;
            uint32_t n = 0, anomalies = 0;
            uint64_t bytes = 0;
            for (PNET_BUFFER_SHARED_MEMORY shi = NET_BUFFER_FIRST_SHARED_MEM_INFO(nb); shi != NULL;
                 shi = NET_BUFFER_SHARED_MEM_NEXT_SEGMENT(shi)) {
                if (n == bound) {
                    anomalies |= OVERLONG;
                    break;
                }
                if (((uintptr_t)shi & 7) != 0 || (uintptr_t)shi < floor) {
                    anomalies |= BAD_POINTER;
                    break;
                }
                uint32_t offset = NET_BUFFER_SHARED_MEM_OFFSET(shi);
                uint32_t length = NET_BUFFER_SHARED_MEM_LENGTH(shi);
                (void)NET_BUFFER_SHARED_MEM_FLAGS(shi);
                bytes += length;
                n++;
                if (NET_BUFFER_SHARED_MEM_HANDLE(shi) == NULL)
                    anomalies |= NULL_HANDLE;
                if (length == 0)
                    anomalies |= ZERO_LENGTH;
                if ((uint64_t)offset + length > 0xFFFFFFFFull)
                    anomalies |= OFFSET_OVERFLOW;
            }
            n_walked++;
            n_with += (n > 0);
            n_segs += n;
            n_bytes += bytes;
            if (n > max_chain)
                max_chain = n;
            if (anomalies != 0)
                for (int k = 0; k < 5; k++)
                    if (anomalies & (1u << k))
                        c->anomalies[k]++;
        }
    }
    c->nbls += n_nbls;
    c->net_buffers += n_nbs;
    c->walked += n_walked;
    c->with_shared_memory += n_with;
    c->segments += n_segs;
    c->shared_bytes += n_bytes;
    c->max_chain = max_chain;
    return n_nbls;
}
