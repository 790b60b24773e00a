//! cflags: -g -O0
// C types as DWARF describes them: typedefs, unions, bit fields, nested
// structs, two-dimensional arrays, bool, negative and unsigned char values,
// a struct inside an array; `inspect` is where a test stops and prints them.
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

typedef enum { MODE_OFF, MODE_ON = 3, MODE_AUTO } mode_t2;

struct flags {
    unsigned ready : 1;
    unsigned level : 3;
    signed delta : 4;
    unsigned rest : 24;
};

union word { uint32_t u; int16_t half[2]; uint8_t bytes[4]; };

typedef struct point { int x, y; } point_t;

struct shape {
    char name[12];
    point_t corners[3];
    struct flags flags;
    union word word;
    mode_t2 mode;
    bool visible;
    int8_t bias;
    uint8_t alpha;
    int grid[2][3];
    double scale;
};

struct shape shapes[2] = {
    {"triangle", {{0, 0}, {4, 0}, {2, -3}}, {1, 5, -3, 1000}, {0x12345678}, MODE_ON, true, -7, 200,
     {{1, 2, 3}, {4, 5, 6}}, 1.5},
    {"line", {{-1, -2}, {3, 4}, {0, 0}}, {0, 2, 7, 9}, {0xfffe0001}, MODE_AUTO, false, 5, 17,
     {{-1, -2, -3}, {-4, -5, -6}}, -0.25},
};

__attribute__((noipa)) int inspect(const struct shape *s, int index) {
    int area = (s->corners[1].x - s->corners[0].x) * (s->corners[2].y - s->corners[0].y);
    printf("inspect %d %s area=%d level=%u delta=%d half1=%d mode=%d grid12=%d\n", index, s->name, area,
           s->flags.level, s->flags.delta, s->word.half[1], (int)s->mode, s->grid[1][2]);
    return area;
}

int main(void) {
    int total = 0;
    for (int i = 0; i < 2; i++)
        total += inspect(&shapes[i], i);
    printf("total=%d\n", total);
    return 0;
}
