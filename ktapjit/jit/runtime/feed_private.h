/* What the native event path's C files share: feed.c (the kfeed and the
 * dispatch of each record), feed_records.c (reading records as the decoder
 * does), feed_order.c (perf.data delivery order) and feed_live.c (merging
 * live rings). Not part of the ABI. */
#ifndef KTAPJIT_FEED_PRIVATE_H
#define KTAPJIT_FEED_PRIVATE_H

#include <string.h>

#include "ktrt_private.h"

#define PERF_RECORD_LOST 2
#define PERF_RECORD_COMM 3
#define PERF_RECORD_FORK 7
#define PERF_RECORD_READ 8
#define PERF_RECORD_SAMPLE 9
#define PERF_RECORD_LOST_SAMPLES 13
#define PERF_RECORD_USER_TYPE_START 64
#define PERF_RECORD_FINISHED_ROUND 68

#define S_IP (1u << 0)
#define S_TID (1u << 1)
#define S_TIME (1u << 2)
#define S_ADDR (1u << 3)
#define S_CALLCHAIN (1u << 5)
#define S_ID (1u << 6)
#define S_CPU (1u << 7)
#define S_PERIOD (1u << 8)
#define S_STREAM_ID (1u << 9)
#define S_RAW (1u << 10)
#define S_IDENTIFIER (1u << 16)

#define MAX_TIMER_CATCH_UP 10000000

/* Where a sample's fields sit (-1: absent), for one sample_type. */
typedef struct kf_layout {
    int64_t id, tid, time, cpu; /* byte offsets from the record start */
    int64_t head_end;           /* end of the fixed head */
    int has_callchain, has_raw;
    int64_t trailer_size, trailer_time; /* sample_id trailer; time offset in it or -1 */
} kf_layout;

typedef struct kf_slot {
    int64_t slot, kind, offset, size, flags;
    kval value; /* KF_CONST */
} kf_slot;

typedef struct kf_dyn {
    int64_t offset, size, relative;
    char *name;
} kf_dyn;

typedef struct kf_probe {
    kcode code;
    int64_t fixed_size;
    char *prefix; /* "corrupt SYS:EVT record at byte offset " */
    char *label;  /* the format's qualified name */
    kf_slot *slots;
    int64_t nslots;
    kf_dyn *dyn; /* every dynamic field, in format order: all are checked */
    int64_t ndyn;
    krt_filter filter; /* the kernel filter (filter.c); n == 0: none */
    int needs_comm;    /* a slot is execname: look the task's name up */
    krt_argstr argstr; /* the print fmt, for KF_ARGSTR slots (argstr.c) */
    kval *sites;       /* a site event's probe names, for KF_SITE_NAME slots */
    int64_t nsites;
} kf_probe;

typedef struct kf_group {
    int64_t *probes;
    int64_t n;
} kf_group;

typedef struct kf_timer {
    __int128 due; /* past int64 when a huge period passed a late timestamp: it never fires again */
    int64_t period;
    kcode code;
} kf_timer;

/* uint64 key -> int64 value, open addressing (keys of 0 are kept aside). */
typedef struct kf_map {
    uint64_t *keys;
    int64_t *vals;
    uint64_t mask, used;
    int has_zero;
    int64_t zero;
} kf_map;

struct kfeed {
    kf_layout *layouts;
    int64_t nlayouts;
    int64_t mode;     /* 0: one layout for everything; 1: look up the id */
    int64_t id_pos;   /* mode 1: byte offset of a sample's id */
    int64_t is_pos;   /* mode 1: bytes from the end of another record's id, or -1 */
    kf_map ids;       /* sample id -> layout << 32 | (group + 1) */
    int64_t noid_group; /* the group of samples without an id, or -1 */
    kf_group *groups;
    int64_t ngroups;
    kf_probe *probes;
    int64_t nprobes;
    kf_timer *timers;
    int64_t ntimers;
    int has_last_id;       /* a one-entry cache in front of ids: samples come in runs */
    uint64_t last_id;
    int64_t last_id_value;
    kf_map comms; /* tid -> (kstr *) */
    uint32_t last_tid;     /* a one-entry cache in front of comms, emptied when they change */
    int64_t last_comm;     /* (kstr *), 0: empty */
    unsigned __int128 lost; /* Python's count is unbounded: damaged LOST records can be huge */
    int64_t last_time, consumed, stopped_at, error_offset, samples;
    kwalk walk;           /* the session's compiled walker (k_feed_walker), or NULL */
    struct kf_live *live; /* the live merger (k_feed_push), made on first use */
    int keeping;          /* k_feed_keep: copy each record the live merger runs into kept */
    int kept_failed;      /* a copy could not grow kept */
    uint8_t *kept;
    uint64_t kept_len, kept_cap;
    krt_buf argbuf;       /* argstr's text, before it is interned */
    char fault[512];   /* the message of the last corrupt record a probe saw */
    char site_fault[256]; /* the same for a site index, read apart from the fields */
    int64_t site_slot;    /* the probename slot of KF_SITE_NAME (one slot in every probe), or -1 */
    char message[256]; /* the stream error of K_FEED_STREAM */
};

typedef struct kf_rec {
    const uint8_t *p; /* the record */
    uint64_t size;
    uint64_t offset;  /* where it starts, for messages (base added) */
} kf_rec;

/* Little-endian reads of 1, 2, 4 or 8 bytes (perf writes host order, and
 * the hosts we run on are little endian). Constant sizes, so each is one load. */
static inline uint64_t rd(const uint8_t *p, int64_t n)
{
    uint8_t b1;
    uint16_t b2;
    uint32_t b4;
    uint64_t b8;
    switch (n) {
    case 1: memcpy(&b1, p, 1); return b1;
    case 2: memcpy(&b2, p, 2); return b2;
    case 4: memcpy(&b4, p, 4); return b4;
    default: memcpy(&b8, p, 8); return b8;
    }
}

/* A real timestamp (decode.has_time): 0 and ~0 are not. */
static inline int has_time(uint64_t t) { return t > 0 && t <= 0x7FFFFFFFFFFFFFFFULL; }

/* What the decoder (events/records/decode.py) makes of a record's head and trailer. */
typedef struct kf_meta {
    uint32_t type;
    int timed;         /* the record carries a time (decode: not None) */
    uint64_t time;
    uint64_t body_end; /* where the sample_id trailer starts */
    const kf_layout *layout; /* samples */
    int64_t group;
    const uint8_t *raw; /* samples: the RAW data, raw[0..n) */
    uint64_t n;
} kf_meta;

/* Defined in one of the files, called from another; hidden, so none is
 * exported from the runtime. */
#pragma GCC visibility push(hidden)

/* feed.c */
int map_put(kf_map *m, uint64_t key, int64_t val);
int map_get(const kf_map *m, uint64_t key, int64_t *val);
int64_t run_record(kstate *s, kfeed *f, const kf_rec *r);

/* feed_records.c */
int record_meta(kfeed *f, const kf_rec *r, int strict, kf_meta *m);

/* feed_live.c */
void live_free(struct kf_live *live);

#pragma GCC visibility pop

#endif
