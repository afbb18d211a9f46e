/* Tests of kubepath.c: the resource table, paths and query strings. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "kubepath.h"

static void test_resource_find(void **state)
{
    const struct kube_resource *r;

    (void)state;
    r = kube_resource_find("v1", "Pod");
    assert_non_null(r);
    assert_string_equal(r->plural, "pods");
    assert_true(r->namespaced);
    assert_string_equal(kube_resource_find("v1", "Service")->plural, "services");
    assert_string_equal(kube_resource_find("discovery.k8s.io/v1", "EndpointSlice")->plural,
                        "endpointslices");
    assert_string_equal(kube_resource_find("gateway.networking.k8s.io/v1", "HTTPRoute")->plural,
                        "httproutes");
    assert_string_equal(kube_resource_find("coordination.k8s.io/v1", "Lease")->plural,
                        "leases");
    r = kube_resource_find("events.k8s.io/v1", "Event");
    assert_non_null(r);
    assert_string_equal(r->api_version, "events.k8s.io/v1");
    assert_string_equal(kube_resource_find("v1", "Event")->api_version, "v1");
    assert_null(kube_resource_find("v1", "Secret"));
    assert_null(kube_resource_find("gateway.networking.k8s.io/v1beta1", "HTTPRoute"));
    assert_null(kube_resource_find("apps/v1", "Pod"));
    assert_null(kube_resource_find(NULL, "Pod"));
}

static void test_paths(void **state)
{
    char buf[256];
    const struct kube_resource *pod = kube_resource_find("v1", "Pod");
    const struct kube_resource *route = kube_resource_find("gateway.networking.k8s.io/v1",
                                                           "HTTPRoute");
    const struct kube_resource *lease = kube_resource_find("coordination.k8s.io/v1", "Lease");
    int n;

    (void)state;
    n = kube_path(buf, sizeof(buf), pod, NULL, NULL, NULL);
    assert_string_equal(buf, "/api/v1/pods");
    assert_int_equal(n, 12);
    kube_path(buf, sizeof(buf), pod, "", NULL, "");
    assert_string_equal(buf, "/api/v1/pods");
    kube_path(buf, sizeof(buf), pod, "team-a", NULL, "watch=1");
    assert_string_equal(buf, "/api/v1/namespaces/team-a/pods?watch=1");
    kube_path(buf, sizeof(buf), pod, "team-a", "nb-1", NULL);
    assert_string_equal(buf, "/api/v1/namespaces/team-a/pods/nb-1");
    kube_path(buf, sizeof(buf), route, "ns", "r", "fieldManager=envoy-router&force=true");
    assert_string_equal(buf, "/apis/gateway.networking.k8s.io/v1/namespaces/ns/httproutes/r"
                        "?fieldManager=envoy-router&force=true");
    kube_path(buf, sizeof(buf), lease, "kube-system", "envoy-router", NULL);
    assert_string_equal(buf, "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/"
                        "envoy-router");
    kube_path(buf, sizeof(buf), kube_resource_find("discovery.k8s.io/v1", "EndpointSlice"),
              NULL, NULL, "labelSelector=a");
    assert_string_equal(buf, "/apis/discovery.k8s.io/v1/endpointslices?labelSelector=a");
    /* names are escaped: nothing can step out of its segment */
    kube_path(buf, sizeof(buf), pod, "a/b", "x y?z%", NULL);
    assert_string_equal(buf, "/api/v1/namespaces/a%2Fb/pods/x%20y%3Fz%25");
    assert_int_equal(kube_path(buf, sizeof(buf), pod, "ns", "..", NULL), -EINVAL);
    assert_int_equal(kube_path(buf, sizeof(buf), pod, ".", "x", NULL), -EINVAL);
    assert_int_equal(kube_path(buf, sizeof(buf), pod, "ns", "", NULL), -EINVAL);
    assert_int_equal(kube_path(buf, sizeof(buf), pod, NULL, "x", NULL), -EINVAL);
    assert_int_equal(kube_path(buf, sizeof(buf), NULL, "ns", "x", NULL), -EINVAL);
    /* exactly fitting, and one byte short */
    assert_int_equal(kube_path(buf, 13, pod, NULL, NULL, NULL), 12);
    assert_string_equal(buf, "/api/v1/pods");
    assert_int_equal(kube_path(buf, 12, pod, NULL, NULL, NULL), -ENAMETOOLONG);
    assert_string_equal(buf, "");
}

static void test_query_add(void **state)
{
    char buf[128] = "";
    char small[24] = "";

    (void)state;
    assert_int_equal(kube_query_add(buf, sizeof(buf), "labelSelector",
                                    "app.kubernetes.io/managed-by=envoy-router,x!=y"),
                     (int)strlen("labelSelector=app.kubernetes.io%2Fmanaged-by%3D"
                                 "envoy-router%2Cx%21%3Dy"));
    assert_string_equal(buf, "labelSelector=app.kubernetes.io%2Fmanaged-by%3Denvoy-router"
                        "%2Cx%21%3Dy");
    kube_query_add(buf, sizeof(buf), "watch", "1");
    kube_query_add(buf, sizeof(buf), "resourceVersion", "");
    assert_string_equal(buf, "labelSelector=app.kubernetes.io%2Fmanaged-by%3Denvoy-router"
                        "%2Cx%21%3Dy&watch=1&resourceVersion=");
    assert_int_equal(kube_query_add(small, sizeof(small), "limit", "500"), 9);
    assert_int_equal(kube_query_add(small, sizeof(small), "continue", "abc+/="), -ENAMETOOLONG);
    assert_string_equal(small, "limit=500");   /* untouched on overflow */
    assert_int_equal(kube_query_add(small, sizeof(small), "a", "b c"), 17);
    assert_string_equal(small, "limit=500&a=b%20c");
    assert_int_equal(kube_query_add(small, sizeof(small), NULL, "x"), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resource_find),
        cmocka_unit_test(test_paths),
        cmocka_unit_test(test_query_add),
    };
    return cmocka_run_group_tests_name("kubepath", tests, NULL, NULL);
}
