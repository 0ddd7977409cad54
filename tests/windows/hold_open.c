/* hold_open PATH MILLISECONDS MARK: open PATH for reading and writing the way an antivirus
 * scanner or an indexer does, sharing read and write but not delete (no FILE_SHARE_DELETE, so
 * the file cannot be renamed over or deleted while it is open), create MARK once it is open,
 * hold it for MILLISECONDS, then close it. Exit 0, or 1 with the Windows error when PATH cannot
 * be opened. Built with mingw-w64 by .ci/windows for the Windows scenarios. */
#include <windows.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: hold_open PATH MILLISECONDS MARK\n");
        return 2;
    }
    HANDLE file = CreateFileA(argv[1], GENERIC_READ | GENERIC_WRITE,
                              FILE_SHARE_READ | FILE_SHARE_WRITE, NULL, OPEN_EXISTING,
                              FILE_ATTRIBUTE_NORMAL, NULL);
    if (file == INVALID_HANDLE_VALUE) {
        fprintf(stderr, "hold_open: cannot open %s: error %lu\n", argv[1], GetLastError());
        return 1;
    }
    HANDLE mark = CreateFileA(argv[3], GENERIC_WRITE, 0, NULL, CREATE_ALWAYS,
                              FILE_ATTRIBUTE_NORMAL, NULL);
    if (mark != INVALID_HANDLE_VALUE)
        CloseHandle(mark);
    Sleep((DWORD)strtoul(argv[2], NULL, 10));
    CloseHandle(file);
    return 0;
}
