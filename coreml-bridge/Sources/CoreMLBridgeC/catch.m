// catch.m - stops Objective-C exceptions at the bridge boundary (see cmb_internal.h).
#import "cmb_internal.h"
#include <string.h>

int32_t cmb_internal_catch(NS_NOESCAPE void (^block)(void), char **message) {
    @try {
        block();
        return 0;
    } @catch (NSException *exception) {
        if (message) {
            NSString *text = [NSString stringWithFormat:@"Objective-C exception %@: %@",
                                                        exception.name, exception.reason];
            *message = strdup(text.UTF8String ? text.UTF8String : "Objective-C exception");
        }
        return 1;
    }
}
